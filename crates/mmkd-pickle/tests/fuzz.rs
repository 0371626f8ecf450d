//! Mutation fuzzing of the pickle reader and the MOSEI layer.
//!
//! Feeds random byte strings and mutations of the fixtures (bit flips, truncations, inserted huge
//! length fields, duplicated chunks, splices) to `pickle::load`, `read_mosei_bytes` and
//! `read_mosei_bytes_with(.., ReadOptions::VIDEO_ONLY)`, and to the view reader `read_mosei_view`
//! under both options (streaming every feature it returns through `write_f32_le`), and checks that
//! none panics and that the peak memory allocated during a call stays within 64x the input size
//! (plus a small constant for fixed-size tables).
//!
//! It also checks that the view reader agrees with the owning one: both load, with the same repairs
//! and the same sample counts, or both refuse, with the same message. The one allowed difference is an
//! input the owning reader refuses for exceeding its data budget (`LimitExceeded`): views decode
//! nothing, so they cost no budget.
//!
//! By default it runs a few thousand cases, like any test. `MMKD_FUZZ_SECS=600` makes it run for ten
//! minutes; `MMKD_FUZZ_SEED` changes the seed. It prints the number of executions at the end:
//!
//! ```text
//! MMKD_FUZZ_SECS=600 cargo test --release -p mmkd-pickle fuzz -- --nocapture
//! ```
//!
//! This file holds a single test on purpose: the allocation counter is process-wide, so another test
//! running concurrently in the same binary would distort the measurements.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mmkd_pickle::mosei::MODALITIES;
use mmkd_pickle::pickle;
use mmkd_pickle::{MoseiError, MoseiFile, MoseiView, ReadOptions, read_mosei_bytes, read_mosei_bytes_with, read_mosei_view};

// ---- allocation accounting ---------------------------------------------------------------------

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(size: usize) {
    let now = CURRENT.fetch_add(size, Ordering::Relaxed) + size;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every call is forwarded to the system allocator unchanged; only counters are updated.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            grew(layout.size());
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            grew(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
            grew(new_size);
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `f` and returns its result with the peak number of bytes it had allocated at once.
fn measured<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = CURRENT.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let out = f();
    (out, PEAK.load(Ordering::Relaxed).saturating_sub(base))
}

// ---- randomness --------------------------------------------------------------------------------

/// SplitMix64: tiny, seedable, good enough to drive mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { (self.next() % n as u64) as usize }
    }

    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

// ---- inputs ------------------------------------------------------------------------------------

/// Opcodes worth inserting: the length-prefixed ones, and the ones that act on the stack and memo.
const OPCODES: &[u8] = b"()Nt]}ealsudbRh2010q\x80\x85\x86\x87\x88\x89\x8a\x8b\x8c\x8d\x8e\x8f\x90\x91\x93\x94\x95\x96\x97\x98XBCTUJKMGcjr.";
const LENGTH_OPCODES: &[u8] = b"XBT\x8d\x8e\x95\x96\x8b";

fn huge_lengths(len: usize) -> [u64; 9] {
    [u32::MAX.into(), i32::MAX as u64, 0x8000_0000, u64::MAX, 1 << 40, len as u64 + 1, (len as u64) * 2, 1 << 31, 0xffff]
}

fn seeds() -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/pickles");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir).map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect()).unwrap_or_default();
    paths.retain(|p| p.extension().is_some_and(|e| e == "pkl"));
    paths.sort();
    let mut seeds: Vec<Vec<u8>> = paths.iter().filter_map(|p| std::fs::read(p).ok()).collect();
    assert!(seeds.len() >= 21, "the fixtures of tests/fixtures/make_pickles.py are missing from {}", dir.display());
    // Protocol 4+ wraps the fixtures in one FRAME whose length turns most insertions and deletions into
    // an immediate "truncated" error; frameless copies (still valid pickles) let mutations reach deeper.
    let frameless: Vec<Vec<u8>> = seeds.iter().filter(|s| s.len() > 11 && s[2] == 0x95).map(|s| [&s[..2], &s[11..]].concat()).collect();
    seeds.extend(frameless);
    // A few small hand-made streams so short inputs get attention too.
    seeds.push(b"\x80\x02]q\x00(K\x01K\x02eh\x00\x86.".to_vec());
    seeds.push(b"\x80\x04\x95\x0b\x00\x00\x00\x00\x00\x00\x00}\x94\x8c\x01a\x94N\x94s.".to_vec());
    seeds
}

/// Applies one random mutation to `data`.
fn mutate(rng: &mut Rng, data: &mut Vec<u8>, seeds: &[Vec<u8>]) {
    let len = data.len();
    match rng.below(11) {
        0 => {
            for _ in 0..1 + rng.below(8) {
                if len > 0 {
                    let i = rng.below(len);
                    data[i] ^= 1 << rng.below(8);
                }
            }
        }
        1 => {
            if len > 0 {
                let i = rng.below(len);
                let random = rng.next() as u8;
                data[i] = *rng.pick(&[0x00, 0xff, 0x7f, 0x80, 0x01, random]);
            }
        }
        2 => data.truncate(rng.below(len + 1)),
        3 => {
            let at = rng.below(len + 1);
            let bytes: Vec<u8> = (0..1 + rng.below(16)).map(|_| rng.next() as u8).collect();
            data.splice(at..at, bytes);
        }
        4 => {
            let start = rng.below(len + 1);
            let end = (start + rng.below(64)).min(len);
            data.drain(start..end);
        }
        5 => {
            // Overwrite 4 or 8 bytes with a huge length, likely right after a length opcode.
            let value = *rng.pick(&huge_lengths(len));
            let width = if rng.chance(2) { 4 } else { 8 };
            if len >= width {
                let at = rng.below(len - width + 1);
                data[at..at + width].copy_from_slice(&value.to_le_bytes()[..width]);
            }
        }
        6 => {
            let at = rng.below(len + 1);
            let mut bytes = vec![*rng.pick(LENGTH_OPCODES)];
            bytes.extend(rng.pick(&huge_lengths(len)).to_le_bytes());
            data.splice(at..at, bytes);
        }
        7 => {
            // Duplicate a chunk elsewhere: repeats BUILDs, REDUCEs, memo traffic.
            if len > 0 {
                let start = rng.below(len);
                let end = (start + 1 + rng.below(256)).min(len);
                let chunk = data[start..end].to_vec();
                let at = rng.below(len + 1);
                for _ in 0..1 + rng.below(4) {
                    data.splice(at..at, chunk.iter().copied());
                }
            }
        }
        8 => {
            let other = rng.pick(seeds);
            let cut = rng.below(len + 1);
            let from = rng.below(other.len() + 1);
            data.truncate(cut);
            data.extend(&other[from..]);
        }
        9 => {
            let at = rng.below(len + 1);
            data.insert(at, *rng.pick(OPCODES));
        }
        _ => {
            let at = rng.below(len + 1);
            let bytes: Vec<u8> = (0..1 + rng.below(6)).map(|_| *rng.pick(OPCODES)).collect();
            data.splice(at..at, bytes);
        }
    }
}

fn next_input(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    if rng.chance(20) {
        // Pure noise, sometimes behind a plausible header.
        let mut data: Vec<u8> = (0..rng.below(512)).map(|_| rng.next() as u8).collect();
        if rng.chance(2) {
            data.splice(0..0, [0x80, 2 + rng.below(4) as u8]);
        }
        return data;
    }
    if rng.chance(20) {
        // Opcode soup: random sequences of real opcodes with small arguments.
        let mut data = vec![0x80, 4];
        for _ in 0..rng.below(300) {
            data.push(*rng.pick(OPCODES));
            if rng.chance(2) {
                data.push(rng.below(4) as u8);
            }
        }
        data.push(b'.');
        return data;
    }
    let mut data = rng.pick(seeds).clone();
    // Mostly one mutation, so that most inputs stay close to valid and exercise the deep paths.
    let mutations = if rng.chance(2) { 1 } else { 2 + rng.below(4) };
    for _ in 0..mutations {
        mutate(rng, &mut data, seeds);
    }
    data
}

// ---- the test ----------------------------------------------------------------------------------

/// What a reader's result amounts to, for comparing the owning and the view reader: the error
/// message, or the repairs and each split's name and sample count.
fn summary<A: mmkd_pickle::FeatureArray>(result: &Result<MoseiFile<A>, MoseiError>) -> String {
    match result {
        Ok(file) => {
            let splits: Vec<String> = file.splits.iter().map(|s| format!("{}:{}:{:?}:{:?}", s.name, s.n(), s.labels, s.ids)).collect();
            format!("ok {splits:?} {:?}", file.repairs)
        }
        Err(e) => format!("error {e}"),
    }
}

/// Reads `input` with the view reader and streams every feature to a sink: nothing may panic.
fn view_and_stream<'a>(input: &'a [u8], opts: &ReadOptions) -> Result<MoseiView<'a>, MoseiError> {
    let view = read_mosei_view(input, Path::new("fuzz.pkl"), opts)?;
    for split in &view.splits {
        for key in MODALITIES {
            if let Some(array) = split.modality(key) {
                let counts = array.write_f32_le(&mut std::io::sink(), |_| {}).expect("a sink never fails");
                assert_eq!(Some(&counts), split.nonfinite.get(key));
            }
        }
    }
    Ok(view)
}

/// Peak bytes one call may allocate: 64x its input, plus a constant for fixed-size tables.
fn allowance(input_len: usize) -> usize {
    64 * input_len + (256 << 10)
}

/// Streams built to maximise memory per input byte (flat structures of the cheapest opcodes, shared
/// and self-referencing objects). Each must stay within the same allowance as the fuzzed inputs.
fn adversarial_inputs() -> Vec<(&'static str, Vec<u8>)> {
    let framed = |body: Vec<u8>| [b"\x80\x02".to_vec(), body, b".".to_vec()].concat();
    let n = 200_000;
    vec![
        ("list of None", framed([b"](".to_vec(), b"N".repeat(n), b"e".to_vec()].concat())),
        ("list of empty lists", framed([b"]".to_vec(), b"]a".repeat(n / 2)].concat())),
        ("tuple of empty lists", framed([b"(".to_vec(), b"]".repeat(n), b"t".to_vec()].concat())),
        ("dict of small ints", framed([b"}(".to_vec(), b"K\x01N".repeat(n / 3), b"u".to_vec()].concat())),
        ("memo spam", framed([b"N".to_vec(), b"\x94".repeat(n)].concat())),
        ("memo of lists", framed([b"](".to_vec(), b"]\x94".repeat(n / 2), b"e".to_vec()].concat())),
        ("dup spam", framed([b"(N".to_vec(), b"2".repeat(n), b"t".to_vec()].concat())),
        ("shared list, many references", framed([b"](".to_vec(), b"N".repeat(1000), b"eq\x00](".to_vec(), b"h\x00".repeat(n / 2), b"e".to_vec()].concat())),
        ("self-referencing dict", framed(b"}q\x00(K\x01h\x00K\x02h\x00K\x03h\x00u".to_vec())),
        ("mark spam", framed(b"(".repeat(n))),
        ("set of floats", framed([b"\x8f(".to_vec(), b"G\x00\x00\x00\x00\x00\x00\x00\x00".repeat(n / 9), b"\x90".to_vec()].concat())),
    ]
}

#[test]
fn fuzz_pickle_and_mosei_readers() {
    for (name, input) in adversarial_inputs() {
        let (result, peak) = measured(|| catch_unwind(AssertUnwindSafe(|| pickle::load(&input).map(|_| ()))));
        let outcome = match &result {
            Ok(Ok(())) => "loads".to_string(),
            Ok(Err(e)) => e.kind().to_string(),
            Err(_) => panic!("adversarial input '{name}' panicked"),
        };
        println!("fuzz: adversarial '{name}': {} bytes, peak {:.1}x, {outcome}", input.len(), peak as f64 / input.len() as f64);
        assert!(peak <= allowance(input.len()), "adversarial input '{name}' allocated {peak} bytes for {} input bytes", input.len());
        let (result, view_peak) = measured(|| catch_unwind(AssertUnwindSafe(|| pickle::load_view(&input).map(|_| ()))));
        assert!(result.is_ok(), "adversarial input '{name}' panicked in load_view");
        assert!(view_peak <= allowance(input.len()), "adversarial input '{name}' allocated {view_peak} bytes in load_view");
    }

    let seconds: Option<u64> = std::env::var("MMKD_FUZZ_SECS").ok().and_then(|s| s.parse().ok());
    let seed: u64 = std::env::var("MMKD_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed_1234);
    let default_cases = 4000;
    let deadline = seconds.map(|s| Instant::now() + Duration::from_secs(s));
    let seeds = seeds();
    let mut rng = Rng(seed);
    let path = Path::new("fuzz.pkl");

    let started = Instant::now();
    let mut executions = 0u64;
    let mut outcomes: BTreeMap<String, u64> = BTreeMap::new();
    let mut worst_ratio = 0.0f64;
    let mut worst_bytes = 0usize;
    let mut worst_input = Vec::new();
    let mut case = 0u64;
    loop {
        match deadline {
            Some(deadline) if Instant::now() >= deadline => break,
            None if case >= default_cases => break,
            _ => {}
        }
        case += 1;
        let input = next_input(&mut rng, &seeds);

        let (raw, raw_peak) = measured(|| catch_unwind(AssertUnwindSafe(|| pickle::load(&input).map(|_| ()))));
        let (mosei, mosei_peak) = measured(|| catch_unwind(AssertUnwindSafe(|| read_mosei_bytes(&input, path).map(|_| ()))));
        let (lenient, lenient_peak) = measured(|| catch_unwind(AssertUnwindSafe(|| read_mosei_bytes_with(&input, path, &ReadOptions::VIDEO_ONLY).map(|_| ()))));
        let mut view_peak = 0;
        let mut views = Vec::new();
        for opts in [ReadOptions::STRICT, ReadOptions::VIDEO_ONLY] {
            let (view, peak) = measured(|| catch_unwind(AssertUnwindSafe(|| summary(&view_and_stream(&input, &opts)))));
            view_peak = view_peak.max(peak);
            views.push(view);
        }
        executions += 5;

        let crashed = raw.is_err() || mosei.is_err() || lenient.is_err() || views.iter().any(|v| v.is_err());
        let peak = raw_peak.max(mosei_peak).max(lenient_peak).max(view_peak);
        if crashed || peak > allowance(input.len()) {
            let saved = std::env::temp_dir().join(format!("mmkd-fuzz-case-{seed}-{case}.pkl"));
            let _ = std::fs::write(&saved, &input);
            panic!(
                "case {case} (seed {seed}): {} — input saved to {}",
                if crashed { "panicked".to_string() } else { format!("allocated {peak} bytes for {} input bytes", input.len()) },
                saved.display()
            );
        }
        // Differential: the view reader decides exactly like the owning one (outside the budget).
        for (view, opts) in views.iter().zip([ReadOptions::STRICT, ReadOptions::VIDEO_ONLY]) {
            let owned = read_mosei_bytes_with(&input, path, &opts);
            let over_budget = owned.as_ref().err().and_then(|e| e.pickle_error()).map(|e| e.kind()) == Some("LimitExceeded");
            let (Ok(view), false) = (view, over_budget) else {
                continue;
            };
            let owned = summary(&owned);
            if *view != owned {
                let saved = std::env::temp_dir().join(format!("mmkd-fuzz-diff-{seed}-{case}.pkl"));
                let _ = std::fs::write(&saved, &input);
                panic!(
                    "case {case} (seed {seed}), {opts:?}: the view reader gives\n  {view}\nthe owning \
                     reader\n  {owned}\ninput saved to {}",
                    saved.display()
                );
            }
        }
        {
            // The share of the allowance used: for small inputs the constant dominates, for large
            // ones the 64x term does, so this is the figure that shows how close a call came.
            let ratio = peak as f64 / allowance(input.len()) as f64;
            if ratio > worst_ratio {
                worst_ratio = ratio;
                worst_bytes = input.len();
                worst_input = input.clone();
            }
        }
        let raw_kind = match raw {
            Ok(Ok(())) => "ok",
            Ok(Err(e)) => e.kind(),
            Err(_) => "panic",
        };
        let mosei_kind = match mosei {
            Ok(Ok(())) => "ok",
            Ok(Err(e)) => e.kind(),
            Err(_) => "panic",
        };
        let lenient_kind = match lenient {
            Ok(Ok(())) => "ok",
            Ok(Err(e)) => e.kind(),
            Err(_) => "panic",
        };
        *outcomes.entry(format!("pickle:{raw_kind}")).or_default() += 1;
        *outcomes.entry(format!("mosei:{mosei_kind}")).or_default() += 1;
        *outcomes.entry(format!("video_only:{lenient_kind}")).or_default() += 1;
        for (view, name) in views.iter().zip(["view", "view_video_only"]) {
            let kind = match view {
                Ok(s) if s.starts_with("ok") => "ok",
                Ok(_) => "error",
                Err(_) => "panic",
            };
            *outcomes.entry(format!("{name}:{kind}")).or_default() += 1;
        }
    }
    let elapsed = started.elapsed();
    println!("fuzz: {executions} executions ({case} inputs x 5 readers) in {:.1} s, seed {seed}, no panics", elapsed.as_secs_f64());
    println!(
        "fuzz: every call stayed within its allowance (64x the input + 256 KiB); the closest used {:.0}% of it \
         (an input of {worst_bytes} bytes)",
        worst_ratio * 100.0
    );
    println!("fuzz: outcomes {outcomes:?}");
    let worst_path = std::env::temp_dir().join(format!("mmkd-fuzz-worst-{seed}.pkl"));
    if std::fs::write(&worst_path, &worst_input).is_ok() {
        println!("fuzz: the input with the worst memory ratio is in {}", worst_path.display());
    }
}
