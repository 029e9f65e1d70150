//! The keystore passphrase typed on a terminal (no echo), when none is given by file or
//! environment: asked once to open a keystore, twice to protect a new one.

use crate::errors::{AppError, Result};
use std::io::IsTerminal;
use std::path::Path;
use zeroize::Zeroizing;

/// Whether a person can be asked: standard input and error are terminals.
pub fn on_terminal() -> bool {
    std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
}

fn read(prompt: &str) -> Result<Zeroizing<String>> {
    rpassword::prompt_password(prompt)
        .map(Zeroizing::new)
        .map_err(|e| AppError::io("the terminal", e))
}

/// The passphrase of the keystore at `path`, typed once.
pub fn passphrase(path: &Path) -> Result<Zeroizing<String>> {
    read(&format!("passphrase of {}: ", path.display()))
}

/// A passphrase for a new keystore at `path`, typed twice (`None` when left empty: the
/// keystore is then not protected, and the caller warns).
pub fn new_passphrase(path: &Path) -> Result<Option<Zeroizing<String>>> {
    let first = read(&format!(
        "passphrase to protect {} (empty: none): ",
        path.display()
    ))?;
    if first.is_empty() {
        return Ok(None);
    }
    let again = read("the same passphrase again: ")?;
    if *again != *first {
        return Err(AppError::Usage(
            "the two passphrases differ; nothing was written: run the command again".into(),
        ));
    }
    Ok(Some(first))
}
