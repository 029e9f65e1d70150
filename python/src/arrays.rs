//! numpy arrays in: float32 or float64 vectors of the right shape, or a clear
//! `InputError` naming what was given.

use crate::errors::input;
use numpy::{PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::prelude::*;

/// `(dtype, shape)` of an array-like, for error messages.
fn described(obj: &Bound<'_, PyAny>) -> String {
    let dtype = obj
        .getattr("dtype")
        .map(|d| d.to_string())
        .unwrap_or_else(|_| obj.get_type().to_string());
    let shape = obj
        .getattr("shape")
        .map(|s| s.to_string())
        .unwrap_or_else(|_| "no shape".into());
    format!("dtype {dtype}, shape {shape}")
}

/// A 2-D float32 or float64 array as rows × columns of `f32`, row-major.
pub fn matrix(obj: &Bound<'_, PyAny>) -> PyResult<(usize, usize, Vec<f32>)> {
    if let Ok(a) = obj.extract::<PyReadonlyArray2<'_, f32>>() {
        let shape = a.shape().to_vec();
        let view = a.as_array();
        return Ok((shape[0], shape[1], view.iter().copied().collect()));
    }
    if let Ok(a) = obj.extract::<PyReadonlyArray2<'_, f64>>() {
        let shape = a.shape().to_vec();
        let view = a.as_array();
        return Ok((shape[0], shape[1], view.iter().map(|&v| v as f32).collect()));
    }
    Err(input(format!(
        "vectors must be a numpy array of float32 (or float64) of shape (n, dim), got {}; \
         e.g. np.asarray(vectors, dtype=np.float32).reshape(n, dim)",
        described(obj)
    )))
}

/// A 1-D float32 or float64 array (or one row of shape `(1, dim)`) as `f32`.
pub fn vector(obj: &Bound<'_, PyAny>) -> PyResult<Vec<f32>> {
    if let Ok(a) = obj.extract::<PyReadonlyArray1<'_, f32>>() {
        return Ok(a.as_array().iter().copied().collect());
    }
    if let Ok(a) = obj.extract::<PyReadonlyArray1<'_, f64>>() {
        return Ok(a.as_array().iter().map(|&v| v as f32).collect());
    }
    if let Ok((1, _, values)) = matrix(obj) {
        return Ok(values);
    }
    Err(input(format!(
        "a query vector must be a numpy array of float32 (or float64) of shape (dim,), got \
         {}",
        described(obj)
    )))
}
