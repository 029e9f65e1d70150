//! Converts the committed ONNX file of the embedded model to the NNEF archive the client
//! loads (`models/efficientnet-lite0/efficientnet-lite0-features.nnef.tgz`):
//!
//! ```sh
//! cargo run -p blindsight-embed --example onnx_to_nnef -- \
//!     models/efficientnet-lite0/efficientnet-lite0-features.onnx \
//!     models/efficientnet-lite0/efficientnet-lite0-features.nnef.tgz
//! ```
//!
//! The archive is written deterministically (fixed timestamps): the test
//! `nnef_archive_is_the_conversion_of_the_onnx_file` converts again and compares bytes.

mod convert;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [onnx, nnef] = args.as_slice() else {
        eprintln!("usage: onnx_to_nnef MODEL.onnx OUT.nnef.tgz");
        return ExitCode::from(2);
    };
    let written = std::fs::read(onnx)
        .map_err(|e| format!("{onnx}: {e}"))
        .and_then(|bytes| convert::onnx_to_nnef(&bytes).map_err(|e| e.to_string()))
        .and_then(|tar| {
            std::fs::write(nnef, &tar)
                .map_err(|e| format!("{nnef}: {e}"))
                .map(|()| tar.len())
        });
    match written {
        Ok(len) => {
            println!("{nnef}: {len} bytes");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
