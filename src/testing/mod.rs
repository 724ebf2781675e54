//! For tests, the demo and load tests: the mock provider and the fuzz targets' properties.

#[doc(hidden)]
pub mod fuzz;
pub mod mock;

/// The reference pages in `docs/` keep up with the code.
#[cfg(test)]
mod docs;
