//! The page and its assets, embedded in the binary: the app works offline and loads nothing
//! from anywhere else (no font, script or style from outside).

/// One embedded file.
pub struct Asset {
    /// Its URL path.
    pub path: &'static str,
    /// Its bytes.
    pub body: &'static [u8],
    /// Its media type.
    pub content_type: &'static str,
}

/// The page (served at `/`).
pub const INDEX: Asset = Asset {
    path: "/",
    body: include_bytes!("../../assets/webapp/index.html"),
    content_type: "text/html; charset=utf-8",
};

/// The page's script, style and icon.
pub const ASSETS: [Asset; 3] = [
    Asset {
        path: "/assets/app.js",
        body: include_bytes!("../../assets/webapp/app.js"),
        content_type: "text/javascript; charset=utf-8",
    },
    Asset {
        path: "/assets/app.css",
        body: include_bytes!("../../assets/webapp/app.css"),
        content_type: "text/css; charset=utf-8",
    },
    Asset {
        path: "/assets/icon.svg",
        body: include_bytes!("../../assets/webapp/icon.svg"),
        content_type: "image/svg+xml",
    },
];
