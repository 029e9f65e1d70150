//! The NNEF archive the client embeds is exactly the conversion of the committed ONNX file
//! (`examples/onnx_to_nnef`): neither can change without the other.

#[path = "../examples/onnx_to_nnef/convert.rs"]
mod convert;

#[test]
fn nnef_archive_is_the_conversion_of_the_onnx_file() -> Result<(), Box<dyn std::error::Error>> {
    let root = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../models/efficientnet-lite0/"
    );
    let onnx = std::fs::read(format!("{root}efficientnet-lite0-features.onnx"))?;
    let committed = std::fs::read(format!("{root}efficientnet-lite0-features.nnef.tgz"))?;
    let converted = convert::onnx_to_nnef(&onnx)?;
    assert!(
        converted == committed,
        "the committed archive is not the conversion of the ONNX file: run \
         `cargo run -p blindsight-embed --example onnx_to_nnef -- \
         models/efficientnet-lite0/efficientnet-lite0-features.onnx \
         models/efficientnet-lite0/efficientnet-lite0-features.nnef.tgz`"
    );
    Ok(())
}
