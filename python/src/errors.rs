//! `blindsight.Error` and its subclasses: every failure of the Rust side raised with the
//! CLI's message (which says what to do).

use blindsight::AppError;
use blindsight_client::ClientError;
use blindsight_search::SearchError;
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

create_exception!(
    blindsight,
    Error,
    PyException,
    "Every blindsight failure: its message says what went wrong and what to do."
);
create_exception!(
    blindsight,
    KeystoreError,
    Error,
    "The keystore: missing, already there, damaged, or a wrong or missing passphrase."
);
create_exception!(
    blindsight,
    InputError,
    Error,
    "Bad input: a file that is not an image, an array of the wrong dtype or shape, a bad name."
);
create_exception!(
    blindsight,
    KindMismatchError,
    InputError,
    "A query made another way than the collection's vectors (another model or dimension)."
);
create_exception!(
    blindsight,
    ServerError,
    Error,
    "The server refused or failed a request, or could not be reached."
);

/// Adds the exception classes to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("Error", py.get_type::<Error>())?;
    m.add("KeystoreError", py.get_type::<KeystoreError>())?;
    m.add("InputError", py.get_type::<InputError>())?;
    m.add("KindMismatchError", py.get_type::<KindMismatchError>())?;
    m.add("ServerError", py.get_type::<ServerError>())?;
    Ok(())
}

fn from_search(e: &SearchError, message: String) -> PyErr {
    match e {
        SearchError::KindMismatch { .. } => KindMismatchError::new_err(message),
        _ => InputError::new_err(message),
    }
}

fn from_client(e: &ClientError, message: String) -> PyErr {
    match e {
        ClientError::PassphraseRequired { .. }
        | ClientError::WrongPassphrase { .. }
        | ClientError::Keystore { .. }
        | ClientError::KeystoreExists { .. } => KeystoreError::new_err(message),
        ClientError::Remote { .. }
        | ClientError::Connection(_)
        | ClientError::AdminTokenRequired { .. }
        | ClientError::AdminTokenRejected { .. }
        | ClientError::TooManySegments { .. } => ServerError::new_err(message),
        ClientError::Search(s) => from_search(s, message),
        ClientError::Usage(_) | ClientError::Embed(_) | ClientError::Io { .. } => {
            InputError::new_err(message)
        }
        _ => Error::new_err(message),
    }
}

/// The Python exception of an error of the Rust side.
pub fn to_py(e: AppError) -> PyErr {
    let message = e.to_string();
    match &e {
        AppError::Client(c) => from_client(c, message),
        AppError::Search(s) => from_search(s, message),
        AppError::Usage(_) | AppError::Io { .. } | AppError::Embed(_) => {
            InputError::new_err(message)
        }
        _ => Error::new_err(message),
    }
}

/// The Python exception of a client error.
pub fn client_to_py(e: ClientError) -> PyErr {
    to_py(AppError::Client(e))
}

/// An input error with `message`.
pub fn input(message: impl Into<String>) -> PyErr {
    InputError::new_err(message.into())
}
