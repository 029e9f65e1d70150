//! # blindsight for Python (`import blindsight`)
//!
//! Thin PyO3 bindings over the Rust client: this crate is only the module and its classes;
//! every step they take (keystore, collections and their tokens, ingest, search, private
//! retrieval, the image model) is `blindsight`'s own code, the same the CLI runs, so a
//! collection made here is searched by the CLI and the other way round. Client side: the
//! keys stay in this process. Heavy calls release the GIL.
//!
//! - [`keystore`]: `Keystore.create` / `Keystore.open`.
//! - [`collection`]: `Collection` (create, open, ingest, search, add and search vectors,
//!   delete, compact, info), `Hit` (a result; its thumbnail by private retrieval),
//!   `IngestReport`.
//! - [`functions`]: `embed_image`, `write_sample_images`.
//! - [`errors`]: the `blindsight.Error` hierarchy, with the CLI's messages.

use pyo3::prelude::*;

/// The allocator the CLI runs on (its encryption and ingest allocate and free large
/// buffers per ciphertext): the module's own Rust allocations, not Python's objects.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod arrays;
mod collection;
mod errors;
mod functions;
mod keystore;

/// The native module, re-exported by the `blindsight` package.
#[pymodule]
fn _blindsight(m: &Bound<'_, PyModule>) -> PyResult<()> {
    blindsight::allocator::tune();
    errors::register(m)?;
    m.add_class::<keystore::Keystore>()?;
    m.add_class::<collection::Collection>()?;
    m.add_class::<collection::Hit>()?;
    m.add_class::<collection::IngestReport>()?;
    m.add_function(wrap_pyfunction!(functions::embed_image, m)?)?;
    m.add_function(wrap_pyfunction!(functions::write_sample_images, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
