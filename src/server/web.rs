//! The dashboard's assets, embedded in the binary.

use poem::{Endpoint, Route};

pub const INDEX_HTML: &str = include_str!("../../web/index.html");

pub fn assets() -> impl Endpoint {
    Route::new()
}
