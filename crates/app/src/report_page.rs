//! One self-contained HTML page of search results (`search --report`, `demo`): the query,
//! the decrypted matches as images with their scores, where the time went. Images are
//! embedded as `data:` URIs (the matches' sealed thumbnails, decrypted: JPEG, 256 px at
//! most), styles and the few lines of script that enlarge an image on a click inline: the
//! file opens anywhere, offline, and can be mailed as is. Every text from outside (file
//! names) is escaped.

use crate::errors::{AppError, Result};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use blindsight_client::client::{Match, SearchTiming};
use blindsight_search::vectors::{decode_rgb, encode_jpeg};
use image::imageops::FilterType;
use std::fmt::Write as _;
use std::io::Cursor;

/// Longest side of an embedded thumbnail, pixels.
pub const THUMBNAIL_SIDE: u32 = 256;

/// An image ready for the page: a JPEG thumbnail as a `data:` URI.
#[derive(Clone, Debug)]
pub struct Thumbnail {
    data_uri: String,
    width: u32,
    height: u32,
}

impl Thumbnail {
    /// Decodes an image file (bounded, see `decode_rgb`) and shrinks it to fit
    /// [`THUMBNAIL_SIDE`] (small images are enlarged without smoothing, to stay visible).
    pub fn of_file(bytes: &[u8], name: &str) -> Result<Self> {
        let img = decode_rgb(bytes, name)?;
        let (w, h) = img.dimensions();
        let scale = f64::from(THUMBNAIL_SIDE) / f64::from(w.max(h));
        let (tw, th) = (
            ((f64::from(w) * scale).round() as u32).max(1),
            ((f64::from(h) * scale).round() as u32).max(1),
        );
        let filter = if scale > 1.0 {
            FilterType::Nearest
        } else {
            FilterType::Triangle
        };
        let small = image::imageops::resize(&img, tw, th, filter);
        Self::of_jpeg(&encode_jpeg(&small, 85)?)
    }

    /// An image's JPEG thumbnail as it came (decrypted) from its collection: embedded as is,
    /// its size read from its header (an error if it is not a JPEG).
    pub fn of_jpeg(jpeg: &[u8]) -> Result<Self> {
        let reader = image::ImageReader::with_format(Cursor::new(jpeg), image::ImageFormat::Jpeg);
        let (width, height) = reader
            .into_dimensions()
            .map_err(|e| AppError::Internal(format!("a thumbnail is not a JPEG: {e}")))?;
        Ok(Self {
            data_uri: format!("data:image/jpeg;base64,{}", STANDARD.encode(jpeg)),
            width,
            height,
        })
    }

    fn img(&self, alt: &str) -> String {
        format!(
            r#"<img src="{}" width="{}" height="{}" alt="{}" tabindex="0" title="click to enlarge">"#,
            self.data_uri,
            self.width,
            self.height,
            escape(alt)
        )
    }
}

/// One ranked match as shown: its image (if it was fetched and decrypted) and scores.
#[derive(Clone, Debug)]
pub struct ShownMatch {
    /// The match.
    pub found: Match,
    /// Its decrypted image.
    pub image: Option<Thumbnail>,
    /// Marked as the expected answer (the original of an edited query).
    pub expected: bool,
}

impl ShownMatch {
    /// `matches` as shown, each with its decrypted thumbnail among `thumbnails` ((id, JPEG)
    /// as [`blindsight_client::Client::thumbnails`] returns them) or else made from its
    /// decrypted file among `files` (an image ingested before thumbnails existed); a match
    /// with neither is shown without an image. Marked expected when its name is `original`.
    pub fn list(
        matches: &[Match],
        thumbnails: &[(i64, Vec<u8>)],
        files: &[(i64, Vec<u8>)],
        original: Option<&str>,
    ) -> Vec<Self> {
        matches
            .iter()
            .map(|m| ShownMatch {
                found: m.clone(),
                image: file_of(thumbnails, m.id)
                    .and_then(|t| Thumbnail::of_jpeg(t).ok())
                    .or_else(|| {
                        file_of(files, m.id).and_then(|d| Thumbnail::of_file(d, &m.name).ok())
                    }),
                expected: original == Some(m.name.as_str()),
            })
            .collect()
    }
}

/// The bytes of image `id` among fetched `files`.
pub fn file_of(files: &[(i64, Vec<u8>)], id: i64) -> Option<&[u8]> {
    files
        .iter()
        .find(|(i, _)| *i == id)
        .map(|(_, d)| d.as_slice())
}

/// One list of results: a title (the collection, its kind), the matches, the timing.
#[derive(Clone, Debug)]
pub struct ResultColumn {
    /// What the column shows, e.g. `embedding · CKKS`.
    pub title: String,
    /// Ranked matches.
    pub matches: Vec<ShownMatch>,
    /// Where the search spent its time.
    pub timing: SearchTiming,
}

/// One query and its results (one column per collection searched).
#[derive(Clone, Debug)]
pub struct QuerySection {
    /// Heading, e.g. the query's file name.
    pub heading: String,
    /// The query image.
    pub query: Option<Thumbnail>,
    /// Results, side by side.
    pub columns: Vec<ResultColumn>,
}

/// A whole page.
#[derive(Clone, Debug, Default)]
pub struct ReportPage {
    /// Page title.
    pub title: String,
    /// Lines of context under the title (parameters, gallery).
    pub notes: Vec<String>,
    /// The queries.
    pub sections: Vec<QuerySection>,
    /// Optional table at the end: header row then rows.
    pub summary: Option<Vec<Vec<String>>>,
}

/// Escapes text for HTML element content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:24px;color:#222;background:#fafafa}\
h1{font-size:22px}h2{font-size:18px;margin-top:32px;border-top:1px solid #ddd;padding-top:16px}\
.note{color:#555;margin:2px 0}.row{display:flex;gap:24px;align-items:flex-start;flex-wrap:wrap}\
.query,.col{background:#fff;border:1px solid #ddd;border-radius:6px;padding:12px}\
.matches{display:flex;gap:12px;flex-wrap:wrap}.match{width:150px;font-size:12px;text-align:center}\
.match img,.query img{max-width:144px;max-height:144px;width:auto;height:auto;image-rendering:auto;\
border:1px solid #ccc;background:#fff;cursor:zoom-in}.match.expected img{border:3px solid #2a8f2a}\
.name{overflow-wrap:anywhere}.score{font-family:monospace}\
#lightbox{display:none;position:fixed;inset:0;background:rgba(0,0,0,.85);align-items:center;\
justify-content:center;cursor:zoom-out;z-index:9}#lightbox.open{display:flex}\
#lightbox img{width:min(90vw,90vh);height:min(90vw,90vh);object-fit:contain}\
.bar{display:flex;height:14px;width:420px;border-radius:3px;overflow:hidden;margin:6px 0}\
.bar span{display:block;height:100%}table{border-collapse:collapse;font-size:13px}\
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th:first-child,td:first-child{text-align:left}";

/// Enlarges an image on a click (or Enter), closes on a click or Escape: no outside resource.
const SCRIPT: &str = "(function(){var b=document.getElementById('lightbox'),i=b.firstChild;\
function show(e){var t=e.target;if(t.tagName!=='IMG'||t.parentNode===b)return;i.src=t.src;i.alt=t.alt;\
b.className='open';}document.addEventListener('click',show);document.addEventListener('keydown',\
function(e){if(e.key==='Escape')b.className='';else if(e.key==='Enter')show(e);});\
b.addEventListener('click',function(){b.className='';});})();";

/// A name as HTML that wraps at its separators (`-`, `_`, `.`, `/`, spaces) rather than
/// mid-word; a run without one wraps anywhere only when it must.
fn name_html(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        out.push_str(&escape(c.encode_utf8(&mut [0; 4])));
        if matches!(c, '-' | '_' | '.' | '/') {
            out.push_str("<wbr>");
        }
    }
    out
}

/// Colours of the timing phases: encrypt, upload, server, download, decrypt.
const PHASES: [(&str, &str); 5] = [
    ("encrypt", "#4e79a7"),
    ("upload", "#f28e2b"),
    ("server", "#e15759"),
    ("download", "#76b7b2"),
    ("decrypt + rank", "#59a14f"),
];

fn timing_html(t: &SearchTiming) -> String {
    let parts = [
        t.encrypt_s,
        t.upload_s,
        t.server_s,
        t.download_s,
        t.decrypt_s,
    ];
    let total: f64 = parts.iter().sum::<f64>().max(1e-9);
    let mut s = String::from(r#"<div class="bar">"#);
    for ((name, colour), v) in PHASES.iter().zip(parts) {
        let _ = write!(
            s,
            r#"<span style="width:{:.2}%;background:{colour}" title="{name} {v:.3} s"></span>"#,
            100.0 * v / total
        );
    }
    s.push_str("</div><table><tr>");
    for (name, colour) in PHASES {
        let _ = write!(s, r#"<th style="color:{colour}">{name}</th>"#);
    }
    s.push_str("<th>total</th></tr><tr>");
    for v in parts {
        let _ = write!(s, "<td>{v:.3} s</td>");
    }
    let _ = write!(
        s,
        "<td>{total:.3} s</td></tr></table><p class=\"note\">query {} KB up, response {} KB down</p>",
        t.up_bytes / 1000,
        t.down_bytes / 1000
    );
    s
}

fn scores_text(m: &Match) -> String {
    if m.channel_cosines.len() > 1 {
        let c: Vec<String> = m
            .channel_cosines
            .iter()
            .map(|c| format!("{c:.4}"))
            .collect();
        format!("RGB {}<br>whole {:.4}", c.join(" "), m.whole_cosine)
    } else {
        format!("cosine {:.4}", m.whole_cosine)
    }
}

impl ReportPage {
    /// The page as one HTML document.
    pub fn to_html(&self) -> String {
        let mut s = String::new();
        let _ = write!(
            s,
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style></head><body><h1>{}</h1>",
            escape(&self.title),
            escape(&self.title)
        );
        for n in &self.notes {
            let _ = write!(s, r#"<p class="note">{}</p>"#, escape(n));
        }
        for sec in &self.sections {
            let _ = write!(
                s,
                r#"<h2>{}</h2><div class="row"><div class="query"><b>query</b><br>"#,
                escape(&sec.heading)
            );
            if let Some(q) = &sec.query {
                s.push_str(&q.img("query"));
            }
            s.push_str("</div>");
            for col in &sec.columns {
                let _ = write!(
                    s,
                    r#"<div class="col"><b>{}</b><div class="matches">"#,
                    escape(&col.title)
                );
                for (rank, m) in col.matches.iter().enumerate() {
                    let class = if m.expected {
                        "match expected"
                    } else {
                        "match"
                    };
                    let _ = write!(s, r#"<div class="{class}">"#);
                    if let Some(img) = &m.image {
                        s.push_str(&img.img(&m.found.name));
                    }
                    let _ = write!(
                        s,
                        r#"<div>#{} <span class="name">{}</span></div><div class="score">{}</div></div>"#,
                        rank + 1,
                        name_html(&m.found.name),
                        scores_text(&m.found)
                    );
                }
                s.push_str("</div>");
                s.push_str(&timing_html(&col.timing));
                s.push_str("</div>");
            }
            s.push_str("</div>");
        }
        if let Some(rows) = &self.summary {
            s.push_str("<h2>Summary</h2><table>");
            for (i, row) in rows.iter().enumerate() {
                s.push_str("<tr>");
                let tag = if i == 0 { "th" } else { "td" };
                for cell in row {
                    let _ = write!(s, "<{tag}>{}</{tag}>", escape(cell));
                }
                s.push_str("</tr>");
            }
            s.push_str("</table>");
        }
        let _ = write!(
            s,
            r#"<div id="lightbox" title="click to close"><img alt=""></div><script>{SCRIPT}</script>"#
        );
        s.push_str("</body></html>\n");
        s
    }

    /// Writes the page to `path` (replacing it atomically: written beside it, then renamed).
    pub fn write(&self, path: &std::path::Path) -> Result<()> {
        let tmp = path.with_extension("html.partial");
        std::fs::write(&tmp, self.to_html()).map_err(|e| AppError::io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| AppError::io(path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(w: u32, h: u32) -> Vec<u8> {
        let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8, y as u8, 90]));
        let mut out = Vec::new();
        image::DynamicImage::ImageRgb8(img)
            .write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
            .map_err(|e| e.to_string())
            .unwrap_or_default();
        out
    }

    #[test]
    fn names_are_escaped() {
        assert_eq!(
            escape(r#"<script>"a"&'b'</script>"#),
            "&lt;script&gt;&quot;a&quot;&amp;&#39;b&#39;&lt;/script&gt;"
        );
        assert_eq!(escape("a\u{1b}[31m"), "a\u{fffd}[31m");
    }

    #[test]
    fn thumbnails_fit_and_keep_the_aspect() -> Result<()> {
        let t = Thumbnail::of_file(&png(1000, 500), "wide.png")?;
        assert_eq!((t.width, t.height), (256, 128));
        let t = Thumbnail::of_file(&png(72, 72), "small.png")?;
        assert_eq!((t.width, t.height), (256, 256));
        assert!(t.data_uri.starts_with("data:image/jpeg;base64,/9j/"));
        assert!(Thumbnail::of_file(b"not an image", "x.png").is_err());
        // a decrypted thumbnail is embedded as it came
        let jpeg = encode_jpeg(&image::RgbImage::new(200, 150), 80)?;
        let t = Thumbnail::of_jpeg(&jpeg)?;
        assert_eq!((t.width, t.height), (200, 150));
        assert!(t.data_uri.ends_with(&STANDARD.encode(&jpeg)));
        assert!(Thumbnail::of_jpeg(&png(10, 10)).is_err());
        assert_eq!(
            name_html("IMG_2041-long.name"),
            "IMG_<wbr>2041-<wbr>long.<wbr>name"
        );
        assert_eq!(name_html("<a>"), "&lt;a&gt;");
        Ok(())
    }

    #[test]
    fn the_page_holds_query_matches_scores_and_timing() -> Result<()> {
        let thumb = Thumbnail::of_file(&png(64, 64), "q.png")?;
        let found = |name: &str, c: f64| Match {
            id: 7,
            name: name.to_string(),
            channel_cosines: vec![c],
            whole_cosine: c,
            thumbnail_slot: None,
        };
        let page = ReportPage {
            title: "results".into(),
            notes: vec!["a note".into()],
            sections: vec![QuerySection {
                heading: "query <1>".into(),
                query: Some(thumb.clone()),
                columns: vec![ResultColumn {
                    title: "embedding".into(),
                    matches: vec![
                        ShownMatch {
                            found: found("cat.jpg", 0.93),
                            image: Some(thumb),
                            expected: true,
                        },
                        ShownMatch {
                            found: found("<img onerror=x>", 0.41),
                            image: None,
                            expected: false,
                        },
                    ],
                    timing: SearchTiming {
                        server_s: 0.2,
                        up_bytes: 65_000,
                        ..SearchTiming::default()
                    },
                }],
            }],
            summary: Some(vec![
                vec!["".into(), "BFV".into()],
                vec!["x".into(), "1".into()],
            ]),
        };
        let html = page.to_html();
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert_eq!(
            html.matches("<img ").count(),
            3,
            "query, one match and the enlarged view"
        );
        assert!(html.contains(r#"<div id="lightbox""#) && html.contains("<script>"));
        assert!(html.contains("cosine 0.9300") && html.contains("match expected"));
        assert!(html.contains("query &lt;1&gt;") && !html.contains("<img onerror"));
        assert!(html.contains("0.200 s") && html.contains("query 65 KB up"));
        assert!(html.contains("<th>BFV</th>"));
        let dir = tempfile::tempdir().map_err(|e| AppError::io("tempdir", e))?;
        let path = dir.path().join("r.html");
        page.write(&path)?;
        assert_eq!(std::fs::read_to_string(&path).ok(), Some(html));
        Ok(())
    }
}
