//! CMU-MultimodalSDK computational sequences (`.csd`): the primary packaging of CMU-MOSEI.
//!
//! A `.csd` file is HDF5 with one top-level group, the root:
//!
//! ```text
//! ROOT/data/<video id>/features    [N, D] float32 or float64
//! ROOT/data/<video id>/intervals   [N, 2] seconds (start, end)
//! ROOT/metadata/<key>              (1,) variable-length string (optional here)
//! ```
//!
//! `read` opens a file and reads one video at a time (never the whole file: memory is bounded by
//! the largest video), `align` is the SDK's `mmdataset.align` on one video's arrays, `build`
//! writes a native dataset from four files, `inspect` describes one file. The HDF5 decoding is
//! the `hdf5-reader` crate (pure Rust; docs/DECISIONS.md, "HDF5").

pub mod align;
pub mod build;
pub mod inspect;
pub mod read;

pub use align::{Align, EPSILON};
pub use build::{BuildOptions, BuildSummary, Folds, build_native};
pub use inspect::{CsdReport, inspect};
pub use read::{CsdFile, Sequence};
