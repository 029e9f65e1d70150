//! The conversion itself, shared by the example and the test that checks the committed
//! archive.

use tract_onnx::prelude::{Framework, InferenceModelExt, TractResult};

/// The ONNX model `onnx` as a deterministic NNEF archive (tar, gzip) of its decluttered
/// typed graph: fixed timestamps in the tar, none in the gzip header.
pub fn onnx_to_nnef(onnx: &[u8]) -> TractResult<Vec<u8>> {
    let model = tract_onnx::onnx()
        .model_for_read(&mut &onnx[..])?
        .into_typed()?
        .into_decluttered()?;
    let gz = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::best());
    let gz = tract_nnef::nnef().write_to_tar_with_config(&model, gz, false, true)?;
    Ok(gz.finish()?)
}
