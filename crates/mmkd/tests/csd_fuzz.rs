//! Mutation fuzzing of the `.csd` reader (issue 18): hostile HDF5 must not panic, hang or
//! exhaust memory.
//!
//! Mutations of the fixtures in tests/fixtures/csd/ (bit flips, truncations, huge 4- and 8-byte
//! fields written over addresses and sizes, zeroed and duplicated ranges, splices of two files)
//! are written to a file and read the way `data csd` and `data inspect` read: open, list the
//! videos, read each video's intervals and features, and the whole `inspect`. Each case must
//! finish (an error is fine) within 20 s, without a panic, and allocate at most 64x its size plus
//! 80 MiB at its peak (the reader's largest chunk is 64 MiB, `read::CsdFile::open`).
//!
//! A few thousand cases by default; `MMKD_FUZZ_SECS=600` runs for ten minutes and
//! `MMKD_FUZZ_SEED` changes the seed:
//!
//! ```text
//! MMKD_FUZZ_SECS=600 cargo test -p mmkd --test csd_fuzz -- --nocapture
//! ```
//!
//! One test in this file on purpose: the allocation counter is process-wide.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mmkd::data::csd::{CsdFile, inspect};

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator and only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size > layout.size() {
                let now = CURRENT.fetch_add(new_size - layout.size(), Ordering::Relaxed) + new_size - layout.size();
                PEAK.fetch_max(now, Ordering::Relaxed);
            } else {
                CURRENT.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn seeds() -> Vec<Vec<u8>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/csd");
    let mut files = Vec::new();
    for dir in ["contiguous", "chunked", "small_chunks", "bad"] {
        let mut names: Vec<PathBuf> = std::fs::read_dir(root.join(dir)).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "csd")).collect();
        names.sort();
        files.extend(names.into_iter().map(|p| std::fs::read(p).unwrap()));
    }
    files
}

fn mutate(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut data = seeds[rng.below(seeds.len())].clone();
    for _ in 0..1 + rng.below(4) {
        let len = data.len().max(1);
        let at = rng.below(len);
        match rng.below(7) {
            0 => {
                for _ in 0..1 + rng.below(8) {
                    let i = rng.below(len);
                    if i < data.len() {
                        data[i] ^= 1 << rng.below(8);
                    }
                }
            }
            1 => data.truncate(at),
            2 => {
                let huge: [u64; 5] = [u64::MAX, u64::MAX / 2, 1 << 40, 1 << 31, data.len() as u64 * 1000];
                let v = huge[rng.below(huge.len())].to_le_bytes();
                let width = if rng.below(2) == 0 { 8 } else { 4 };
                for (k, b) in v.iter().take(width).enumerate() {
                    if at + k < data.len() {
                        data[at + k] = *b;
                    }
                }
            }
            3 => {
                let end = (at + 1 + rng.below(256)).min(data.len());
                data[at.min(end)..end].fill(0);
            }
            4 => {
                let end = (at + 1 + rng.below(512)).min(data.len());
                let piece = data[at.min(end)..end].to_vec();
                let to = rng.below(data.len().max(1));
                let stop = (to + piece.len()).min(data.len());
                data[to..stop].copy_from_slice(&piece[..stop - to]);
            }
            5 => {
                let other = &seeds[rng.below(seeds.len())];
                let cut = rng.below(other.len());
                data.truncate(at);
                data.extend_from_slice(&other[cut.min(other.len())..]);
            }
            _ => {
                // An address or size field pointing back into the file: cycles.
                let v = (rng.below(data.len().max(1)) as u64).to_le_bytes();
                for (k, b) in v.iter().enumerate() {
                    if at + k < data.len() {
                        data[at + k] = *b;
                    }
                }
            }
        }
    }
    data
}

/// What `data csd` and `data inspect` do with one file; the outcome's first words.
fn read_everything(path: &Path) -> String {
    let outcome = (|| -> anyhow::Result<String> {
        let file = CsdFile::open(path)?;
        let videos = file.videos()?;
        let _ = file.metadata();
        let mut read = 0;
        for video in videos.iter().take(64) {
            if file.read(video, true).is_ok() {
                read += 1;
            }
        }
        let report = inspect(path, |_, _| {})?;
        Ok(format!("opens ({read}/{} videos read, {} unreadable in inspect)", videos.len(), report.unreadable_count))
    })();
    match outcome {
        Ok(s) => s.split(' ').next().unwrap_or("").to_string(),
        Err(e) => {
            let msg = e.to_string();
            // Group outcomes by the message's kind, without the file name and numbers.
            let kind: String = msg.split(": ").nth(1).unwrap_or(&msg).chars().take(40).filter(|c| !c.is_ascii_digit()).collect();
            format!("refused: {kind}")
        }
    }
}

#[test]
fn fuzz_csd_reader() {
    let seconds: Option<u64> = std::env::var("MMKD_FUZZ_SECS").ok().and_then(|s| s.parse().ok());
    let seed: u64 = std::env::var("MMKD_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x00c5_d5eed);
    let deadline = seconds.map(|s| Instant::now() + Duration::from_secs(s));
    let cases = 4000u64;
    let seeds = seeds();
    let mut rng = Rng(seed | 1);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fuzz.csd");
    let mut outcomes: BTreeMap<String, u64> = BTreeMap::new();
    let mut worst = 0.0f64;
    let started = Instant::now();
    let mut case = 0u64;
    loop {
        match deadline {
            Some(d) if Instant::now() >= d => break,
            None if case >= cases => break,
            _ => {}
        }
        case += 1;
        let input = mutate(&mut rng, &seeds);
        std::fs::write(&path, &input).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let worker_path = path.clone();
        let base = CURRENT.load(Ordering::Relaxed);
        PEAK.store(base, Ordering::Relaxed);
        std::thread::spawn(move || {
            let result = catch_unwind(AssertUnwindSafe(|| read_everything(&worker_path)));
            let _ = tx.send(result);
        });
        let saved = std::env::temp_dir().join(format!("mmkd-csd-fuzz-{seed}-{case}.csd"));
        let result = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(r) => r,
            Err(_) => {
                let _ = std::fs::write(&saved, &input);
                panic!("case {case} (seed {seed}) did not finish in 20 s; input saved to {}", saved.display());
            }
        };
        let outcome = match result {
            Ok(o) => o,
            Err(_) => {
                let _ = std::fs::write(&saved, &input);
                panic!("case {case} (seed {seed}) panicked; input saved to {}", saved.display());
            }
        };
        let peak = PEAK.load(Ordering::Relaxed).saturating_sub(base);
        let allowance = 64 * input.len() + (80 << 20);
        if peak > allowance {
            let _ = std::fs::write(&saved, &input);
            panic!("case {case} (seed {seed}) allocated {peak} bytes for {} input bytes; input saved to {}", input.len(), saved.display());
        }
        worst = worst.max(peak as f64 / input.len().max(1) as f64);
        *outcomes.entry(outcome).or_default() += 1;
    }
    println!("fuzz: {case} cases in {:.1} s (seed {seed}), worst peak {worst:.1}x the input", started.elapsed().as_secs_f64());
    for (outcome, n) in &outcomes {
        println!("  {n:6}  {outcome}");
    }
    assert!(outcomes.keys().any(|k| k.starts_with("opens")), "some mutations must still read");
    assert!(outcomes.keys().any(|k| k.starts_with("refused")), "some mutations must be refused");
}
