//! Opening a `.csd` file and reading one video's `features` and `intervals`, with every problem
//! reported as an input error naming the file, the video and the field.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Result;
use hdf5_reader::group::Group;
use hdf5_reader::{Dataset, Datatype, FileStorage, Hdf5File, OpenOptions};

use crate::bail_input;

/// The most one dataset read may allocate. A MOSEI video's COVAREP features are about 10 MB; a
/// header that claims more than this is refused instead of exhausting memory.
pub const MAX_READ_BYTES: usize = 1 << 30;

/// HDF5's signature; the SDK's files start with it (no user block).
const SIGNATURE: &[u8; 8] = b"\x89HDF\r\n\x1a\n";

/// An open computational sequence.
pub struct CsdFile {
    path: PathBuf,
    root: String,
    root_group: Group,
    data: Group,
    /// The file's size in bytes.
    len: u64,
    // Keeps the file's storage and caches alive for the groups above.
    _file: Hdf5File,
}

/// One video of one computational sequence, rows in file order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sequence {
    /// `[start, end]` in seconds, one per row; finite, `start <= end` (checked on reading).
    pub intervals: Vec<[f64; 2]>,
    /// Row-major `rows x dim` as float32, what the native format stores (float64 files are
    /// rounded once, here; empty when only the intervals were read).
    pub features: Vec<f32>,
    /// Feature columns.
    pub dim: usize,
}

impl Sequence {
    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.intervals.len()
    }

    /// Row `i` of the features.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.features[i * self.dim..(i + 1) * self.dim]
    }
}

/// Shape and type of one video's features, read from the header only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeatureLayout {
    /// Rows (the first dimension).
    pub rows: usize,
    /// Columns.
    pub dim: usize,
    /// "float32" or "float64".
    pub dtype: &'static str,
}

/// Whether `path` starts with HDF5's signature (a computational sequence, or another HDF5 file).
pub fn is_hdf5(path: &Path) -> bool {
    let mut head = [0u8; 8];
    std::fs::File::open(path).and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head)).is_ok() && &head == SIGNATURE
}

impl CsdFile {
    /// Open `path`: check that it is HDF5, find the root group (the first top-level group in
    /// name order, as the SDK's `list(h5handle.keys())[0]`) and its `data` group.
    pub fn open(path: &Path) -> Result<CsdFile> {
        let shown = path.display();
        let mut head = [0u8; 8];
        match std::fs::File::open(path).and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => bail_input!("{shown}: not an HDF5 file (shorter than the 8-byte HDF5 signature; a .csd file is HDF5)"),
            Err(e) => bail_input!("{shown}: cannot read: {e}"),
        }
        if &head != SIGNATURE {
            bail_input!("{shown}: not an HDF5 file (its first bytes are not the HDF5 signature \\x89HDF\\r\\n\\x1a\\n; a .csd file is HDF5)");
        }
        let storage = match FileStorage::open(path) {
            Ok(s) => s,
            Err(e) => bail_input!("{shown}: cannot read: {e}"),
        };
        // Small caches: videos are read once each, in order.
        let options = OpenOptions::default().with_max_read_bytes(MAX_READ_BYTES).with_max_chunk_bytes(64 << 20).with_chunk_cache_bytes(8 << 20);
        let file = match Hdf5File::from_storage_with_options(Arc::new(storage), options) {
            Ok(f) => f,
            Err(e) => bail_input!("{shown}: not a readable HDF5 file: {e}"),
        };
        // HDF5 records where the file ends; a copy cut short (an interrupted download) may still
        // hold the first videos, but it is not the file the SDK would read (h5py refuses it).
        let (eof, size) = (file.superblock().base_address.saturating_add(file.superblock().eof_address), file.storage().len());
        if eof > size {
            bail_input!("{shown}: truncated: the HDF5 superblock says the file ends at byte {eof}, but it has {size} bytes (an interrupted download or copy?)");
        }
        let top = file.root_group().and_then(|g| g.member_names().map(|(groups, _)| (g, groups)));
        let (_, mut groups) = match top {
            Ok(t) => t,
            Err(e) => bail_input!("{shown}: cannot list the top-level groups: {e}"),
        };
        groups.sort();
        let Some(root) = groups.into_iter().next() else {
            bail_input!("{shown}: no top-level group (a computational sequence has one root group holding data/ and metadata/)");
        };
        let root_group = match file.group(&format!("/{root}")) {
            Ok(g) => g,
            Err(e) => bail_input!("{shown}: root group \"{root}\": {e}"),
        };
        let data = match root_group.group("data") {
            Ok(g) => g,
            Err(_) => bail_input!("{shown}: root group \"{root}\" has no \"data\" group (a computational sequence keeps ROOT/data/<video id>/features and intervals)"),
        };
        Ok(CsdFile { path: path.to_path_buf(), root, root_group, data, len: size, _file: file })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The root group's name (the SDK's "root name", e.g. "COVAREP").
    pub fn root(&self) -> &str {
        &self.root
    }

    /// The video ids (the groups under `data`), sorted.
    pub fn videos(&self) -> Result<Vec<String>> {
        let (mut groups, _) = match self.data.member_names() {
            Ok(m) => m,
            Err(e) => bail_input!("{}: cannot list {}/data: {e}", self.path.display(), self.root),
        };
        groups.sort();
        Ok(groups)
    }

    /// `metadata/<key>` strings, sorted by key. Optional: a file without metadata gives an empty
    /// list, and an unreadable entry is reported as its error text rather than failing.
    pub fn metadata(&self) -> Vec<(String, String)> {
        let Ok(meta) = self.root_group.group("metadata") else {
            return Vec::new();
        };
        let Ok((_, mut keys)) = meta.member_names() else {
            return Vec::new();
        };
        keys.sort();
        keys.into_iter()
            .map(|k| {
                // The SDK writes each as one string, shape (1,): a header declaring more is not
                // metadata (and reading it could allocate what the header claims).
                let value = match meta.dataset(&k) {
                    Ok(d) if d.shape().iter().product::<u64>() <= 16 => d.read_strings().map(|s| s.join("\n")).unwrap_or_else(|e| format!("(unreadable: {e})")),
                    Ok(d) => format!("(skipped: shape {:?}, not one string)", d.shape()),
                    Err(e) => format!("(unreadable: {e})"),
                };
                (k, value)
            })
            .collect()
    }

    fn video_datasets(&self, video: &str) -> Result<(Dataset, Dataset)> {
        let shown = self.path.display();
        let group = match self.data.group(video) {
            Ok(g) => g,
            Err(_) => bail_input!("{shown}: video \"{video}\": not in the file"),
        };
        let open = |field: &str| match group.dataset(field) {
            Ok(d) => Ok(d),
            Err(e) => bail_input!("{shown}: video \"{video}\": field \"{field}\": missing or unreadable: {e}"),
        };
        Ok((open("features")?, open("intervals")?))
    }

    /// The features' shape and type from the header, without reading the values.
    pub fn layout(&self, video: &str) -> Result<FeatureLayout> {
        let (features, intervals) = self.video_datasets(video)?;
        self.check_shapes(video, &features, &intervals)
    }

    fn check_shapes(&self, video: &str, features: &Dataset, intervals: &Dataset) -> Result<FeatureLayout> {
        let shown = self.path.display();
        let fs = features.shape();
        let is = intervals.shape();
        if is.len() != 2 || is[1] != 2 {
            bail_input!("{shown}: video \"{video}\": field \"intervals\": expected shape [N, 2], got {is:?}");
        }
        if fs.len() != 2 {
            bail_input!("{shown}: video \"{video}\": field \"features\": expected shape [N, D], got {fs:?}");
        }
        if fs[0] != is[0] {
            bail_input!("{shown}: video \"{video}\": field \"features\" has {} rows but \"intervals\" has {} (expected one interval per feature row)", fs[0], is[0]);
        }
        let dtype = float_name(features.dtype())
            .ok_or_else(|| crate::error::input_error(format!("{shown}: video \"{video}\": field \"features\": expected float32 or float64, got {:?}", features.dtype())))?;
        if float_name(intervals.dtype()).is_none() {
            bail_input!("{shown}: video \"{video}\": field \"intervals\": expected float32 or float64, got {:?}", intervals.dtype());
        }
        let (Ok(rows), Ok(dim)) = (usize::try_from(fs[0]), usize::try_from(fs[1])) else {
            bail_input!("{shown}: video \"{video}\": field \"features\": shape {fs:?} is too large");
        };
        // Every value must come from the file: stored as it is, or deflated (at most 1032:1). A
        // header may declare any shape (unwritten datasets read as fill values): refuse one that
        // the file cannot hold before anything is allocated for it.
        let declared = (fs[0] as u128) * (fs[1] as u128 * 8 + 16);
        let possible = (self.len as u128 * 1032 + (1 << 20)).min(MAX_READ_BYTES as u128);
        if declared > possible {
            bail_input!("{shown}: video \"{video}\": field \"features\": shape {fs:?} declares more data than the file can hold ({} bytes)", self.len);
        }
        Ok(FeatureLayout { rows, dim, dtype })
    }

    /// Read one video: the intervals always, the features when `with_features`. Refuses
    /// intervals with NaN or infinite values and intervals whose end is before their start.
    pub fn read(&self, video: &str, with_features: bool) -> Result<Sequence> {
        let seq = self.read_unchecked(video, with_features)?;
        for (i, &[start, end]) in seq.intervals.iter().enumerate() {
            if !start.is_finite() || !end.is_finite() {
                bail_input!("{}: video \"{video}\": field \"intervals\": row {i} is [{start}, {end}]: expected finite seconds", self.path.display());
            }
            if end < start {
                bail_input!("{}: video \"{video}\": field \"intervals\": row {i} is [{start}, {end}]: the end is before the start", self.path.display());
            }
        }
        Ok(seq)
    }

    /// `read` without the checks on the intervals' values (shapes and types are still checked),
    /// for `inspect`, which counts the problems instead.
    pub fn read_unchecked(&self, video: &str, with_features: bool) -> Result<Sequence> {
        let shown = self.path.display();
        let (features, intervals) = self.video_datasets(video)?;
        let layout = self.check_shapes(video, &features, &intervals)?;
        let flat = read_f64(&intervals).map_err(|e| crate::error::input_error(format!("{shown}: video \"{video}\": field \"intervals\": {e}")))?;
        let rows = flat.chunks_exact(2).map(|p| [p[0], p[1]]).collect();
        let values = if with_features { read_f32(&features).map_err(|e| crate::error::input_error(format!("{shown}: video \"{video}\": field \"features\": {e}")))? } else { Vec::new() };
        if flat.len() != 2 * layout.rows || (with_features && values.len() != layout.rows * layout.dim) {
            bail_input!(
                "{shown}: video \"{video}\": the stored values do not fill the declared shapes ({} interval values for {} rows, {} feature values for {} x {})",
                flat.len(),
                layout.rows,
                values.len(),
                layout.rows,
                layout.dim
            );
        }
        Ok(Sequence { intervals: rows, features: values, dim: layout.dim })
    }
}

fn float_name(dtype: &Datatype) -> Option<&'static str> {
    match dtype {
        Datatype::FloatingPoint { size: 4, .. } => Some("float32"),
        Datatype::FloatingPoint { size: 8, .. } => Some("float64"),
        _ => None,
    }
}

/// A float dataset's values, widened to f64, in row-major order (the intervals).
fn read_f64(dataset: &Dataset) -> std::result::Result<Vec<f64>, hdf5_reader::error::Error> {
    Ok(match dataset.dtype() {
        Datatype::FloatingPoint { size: 4, .. } => dataset.read_array::<f32>()?.iter().map(|&x| x as f64).collect(),
        _ => read_native::<f64>(dataset)?,
    })
}

/// A float dataset's values as f32, in row-major order (the features): float32 is read straight
/// into the result, float64 rounded.
fn read_f32(dataset: &Dataset) -> std::result::Result<Vec<f32>, hdf5_reader::error::Error> {
    Ok(match dataset.dtype() {
        Datatype::FloatingPoint { size: 4, .. } => read_native::<f32>(dataset)?,
        _ => dataset.read_array::<f64>()?.iter().map(|&x| x as f32).collect(),
    })
}

/// Read into one buffer of the element type, without an intermediate array (the caller checked
/// that the declared size is one the file can hold).
fn read_native<T: hdf5_reader::H5Type + Default + Clone>(dataset: &Dataset) -> std::result::Result<Vec<T>, hdf5_reader::error::Error> {
    let n = usize::try_from(dataset.num_elements()?).map_err(|_| hdf5_reader::error::Error::InvalidData("dataset too large".into()))?;
    let mut values = vec![T::default(); n];
    dataset.read_into(&mut values)?;
    Ok(values)
}
