//! Where a split's features live: in an owned `Vec<f32>` (synthetic data, pickles, tests, anything
//! edited), or in place in a memory-mapped native split file, read without a copy.
//!
//! Why: a MOSEI-sized native dataset is 6.35 GB of float32. Decoded into vectors it was anonymous
//! memory for the whole run (training the paper teacher on it peaked at 12.8 GB RSS, all of it
//! anonymous). Read in place it is page cache: the kernel pages it in as batches touch rows and
//! can drop it again under pressure, and a batch copies only its own rows
//! (`Split::batch`). docs/DECISIONS.md, "Data at MOSEI's size", has the measurements.
//!
//! Reading in place is valid because safetensors' data section starts 8-byte aligned (the header
//! is padded with spaces to a multiple of 8 by the safetensors serializer and by
//! `mmkd_pickle::safetensors_stream`) and an f32 tensor's bytes are little-endian. Both are
//! checked when a file is read ([`Features::in_place`]); where either does not hold, the reader
//! decodes a copy instead (`data::native`).

use std::fmt;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A native split file mapped read-only, shared by every [`Features`] read from it. The map lives
/// as long as the last of them.
pub struct MappedSplitFile {
    path: PathBuf,
    map: memmap2::Mmap,
}

impl MappedSplitFile {
    /// Map `path` read-only. The error names the file.
    pub fn open(path: &Path) -> std::io::Result<Arc<MappedSplitFile>> {
        let named = |source: std::io::Error| std::io::Error::new(source.kind(), format!("{}: cannot map the file: {source}", path.display()));
        let file = std::fs::File::open(path).map_err(named)?;
        // SAFETY: memmap2 cannot rule out that the file changes while it is mapped: if another
        // process truncated or rewrote it in place, reads of the map would see the new bytes or
        // fault (SIGBUS). The mapping is read-only, and mmkd never writes a split file in place:
        // `native::save` writes a temporary sibling and renames it over the old name
        // (`durable::write_atomic`), which leaves a mapped old file intact until it is unmapped.
        // The caller's contract, as for `mmkd_pickle::MappedFile`, is that nobody else modifies or
        // truncates a dataset's files while a process reads them.
        #[allow(unsafe_code)]
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(named)?;
        // No access advice: training reads rows in shuffled order (not `Sequential`, which would
        // let the kernel drop pages right after their first read), and a row is tens of KiB in a
        // row (not `Random`, which would switch read-ahead off).
        Ok(Arc::new(MappedSplitFile { path: path.to_path_buf(), map }))
    }

    /// The path the file was mapped from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.map
    }
}

impl fmt::Debug for MappedSplitFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MappedSplitFile").field("path", &self.path).field("len", &self.map.len()).finish()
    }
}

/// Why a tensor's bytes cannot be read in place as `[f32]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NotInPlace {
    /// The platform is big-endian; the file's floats are little-endian.
    BigEndian,
    /// The bytes do not start at a multiple of 4 in memory (a file whose header is not padded to
    /// a multiple of 8, or an f32 tensor after one of an odd byte length).
    Misaligned {
        /// Byte offset of the tensor's data in the file.
        offset: usize,
    },
    /// The range runs past the end of the file.
    OutOfBounds {
        /// Byte offset of the tensor's data in the file.
        offset: usize,
        /// Bytes the tensor needs.
        bytes: usize,
        /// Bytes in the file.
        file_len: usize,
    },
}

impl fmt::Display for NotInPlace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotInPlace::BigEndian => write!(f, "this platform is big-endian and the file's floats are little-endian"),
            NotInPlace::Misaligned { offset } => write!(f, "its data start at byte {offset}, expected a multiple of 4 for float32"),
            NotInPlace::OutOfBounds { offset, bytes, file_len } => write!(f, "expected {bytes} bytes from byte {offset}, found a file of {file_len} bytes"),
        }
    }
}

/// A split's features of one modality, row-major: owned or in place in a mapped file. Reads go
/// through `Deref<Target = [f32]>`, so `&features[..]`, `.len()` and `.chunks(..)` work as on a
/// `Vec<f32>`; writes go through [`Features::make_mut`], which copies mapped features first.
#[derive(Clone)]
pub struct Features(Storage);

#[derive(Clone)]
enum Storage {
    Owned(Vec<f32>),
    /// `len` floats at byte `offset` of `file`, checked aligned and in bounds on construction.
    Mapped {
        file: Arc<MappedSplitFile>,
        offset: usize,
        len: usize,
    },
}

impl Features {
    /// Features held in memory.
    pub fn owned(values: Vec<f32>) -> Features {
        Features(Storage::Owned(values))
    }

    /// `len` little-endian floats at byte `offset` of `file`, read in place; why not, when the
    /// platform or the bytes' position does not allow it (the caller then decodes a copy).
    pub fn in_place(file: &Arc<MappedSplitFile>, offset: usize, len: usize) -> Result<Features, NotInPlace> {
        if cfg!(target_endian = "big") {
            return Err(NotInPlace::BigEndian);
        }
        let bytes = file.bytes();
        let out_of_bounds = NotInPlace::OutOfBounds { offset, bytes: len.saturating_mul(4), file_len: bytes.len() };
        let end = len.checked_mul(4).and_then(|b| offset.checked_add(b)).ok_or(out_of_bounds.clone())?;
        let Some(region) = bytes.get(offset..end) else { return Err(out_of_bounds) };
        // The map itself is page-aligned, so this is the offset's alignment; checked on the
        // address all the same, which is what reading floats from it needs.
        if bytemuck::try_cast_slice::<u8, f32>(region).is_err() {
            return Err(NotInPlace::Misaligned { offset });
        }
        Ok(Features(Storage::Mapped { file: Arc::clone(file), offset, len }))
    }

    /// Whether the features are read in place from a mapped file.
    pub fn is_mapped(&self) -> bool {
        matches!(self.0, Storage::Mapped { .. })
    }

    /// The features, writable: mapped features are first copied into memory (the map is
    /// read-only, and the file is the dataset on disk). Everything that edits features in place
    /// (`missing::Missing::apply`, tests) goes through this.
    pub fn make_mut(&mut self) -> &mut [f32] {
        if let Storage::Mapped { .. } = self.0 {
            self.0 = Storage::Owned(self.to_vec());
        }
        match &mut self.0 {
            Storage::Owned(v) => v,
            Storage::Mapped { .. } => unreachable!("copied just above"),
        }
    }

    /// The features as an owned vector (a copy when mapped).
    pub fn into_vec(self) -> Vec<f32> {
        match self.0 {
            Storage::Owned(v) => v,
            Storage::Mapped { .. } => self.to_vec(),
        }
    }
}

impl Deref for Features {
    type Target = [f32];

    fn deref(&self) -> &[f32] {
        match &self.0 {
            Storage::Owned(v) => v,
            // Checked in bounds and 4-byte aligned in `in_place`; the map never moves.
            Storage::Mapped { file, offset, len } => bytemuck::cast_slice(&file.bytes()[*offset..*offset + 4 * *len]),
        }
    }
}

impl From<Vec<f32>> for Features {
    fn from(values: Vec<f32>) -> Features {
        Features::owned(values)
    }
}

impl FromIterator<f32> for Features {
    fn from_iter<I: IntoIterator<Item = f32>>(iter: I) -> Features {
        Features::owned(iter.into_iter().collect())
    }
}

/// Equal when the values are, wherever they are stored (NaN is unequal to itself, as in `Vec`).
impl PartialEq for Features {
    fn eq(&self, other: &Features) -> bool {
        **self == **other
    }
}

impl PartialEq<Vec<f32>> for Features {
    fn eq(&self, other: &Vec<f32>) -> bool {
        **self == other[..]
    }
}

/// Short features print their values (test failures); long ones where they are and how many,
/// never gigabytes of floats.
impl fmt::Debug for Features {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 64;
        if self.len() <= SHOWN {
            return f.debug_list().entries(self.iter()).finish();
        }
        match &self.0 {
            Storage::Owned(v) => write!(f, "Features {{ owned: {} floats, first: {:?} }}", v.len(), &v[..8]),
            Storage::Mapped { file, offset, len } => write!(f, "Features {{ mapped: {}, byte {offset}, {len} floats, first: {:?} }}", file.path().display(), &self[..8]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_with(bytes: &[u8]) -> (tempfile::NamedTempFile, Arc<MappedSplitFile>) {
        let tmp = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(tmp.path(), bytes).unwrap();
        let map = MappedSplitFile::open(tmp.path()).unwrap();
        (tmp, map)
    }

    #[test]
    fn in_place_reads_the_file_and_make_mut_copies_it() {
        let values = [1.5f32, -2.0, 3.25, 0.0, 7.0];
        let mut bytes = vec![0u8; 8];
        bytes.extend(values.iter().flat_map(|x| x.to_le_bytes()));
        let (_tmp, map) = file_with(&bytes);
        let mut f = Features::in_place(&map, 8, 5).unwrap();
        assert!(f.is_mapped());
        assert_eq!(&f[..], &values);
        assert_eq!(f, Features::owned(values.to_vec()));
        f.make_mut()[0] = 9.0;
        assert!(!f.is_mapped());
        assert_eq!(f[0], 9.0);
        assert_eq!(Features::in_place(&map, 8, 5).unwrap()[0], 1.5, "the file is untouched");
    }

    #[test]
    fn misaligned_or_out_of_bounds_bytes_are_refused() {
        let (_tmp, map) = file_with(&[0u8; 24]);
        assert_eq!(Features::in_place(&map, 6, 2).unwrap_err(), NotInPlace::Misaligned { offset: 6 });
        let err = Features::in_place(&map, 16, 3).unwrap_err();
        assert_eq!(err, NotInPlace::OutOfBounds { offset: 16, bytes: 12, file_len: 24 });
        assert!(err.to_string().contains("expected 12 bytes from byte 16, found a file of 24 bytes"), "{err}");
        assert!(Features::in_place(&map, 8, usize::MAX).is_err(), "overflow is out of bounds, not a panic");
    }

    #[test]
    fn a_missing_file_is_named() {
        let err = MappedSplitFile::open(Path::new("/nonexistent/train.safetensors")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/train.safetensors"), "{err}");
    }
}
