//! Property: any tree of plain values, written the way CPython's pickler writes it (protocol 2 or 4,
//! memoizing every string and container), reads back equal.

use mmkd_pickle::pickle::{Value, load};
use proptest::prelude::*;

/// A minimal pickler for the plain part of [`Value`], following CPython's choices of opcodes.
struct Pickler {
    out: Vec<u8>,
    protocol: u8,
    memo: u32,
}

impl Pickler {
    fn dump(value: &Value, protocol: u8) -> Vec<u8> {
        let mut p = Pickler { out: Vec::new(), protocol, memo: 0 };
        p.save(value);
        p.out.push(b'.');
        let mut stream = vec![0x80, protocol];
        if protocol >= 4 {
            stream.push(0x95); // One FRAME around everything.
            stream.extend((p.out.len() as u64).to_le_bytes());
        }
        stream.extend(p.out);
        stream
    }

    fn memoize(&mut self) {
        if self.protocol >= 4 {
            self.out.push(0x94);
        } else if self.memo < 256 {
            self.out.extend([b'q', self.memo as u8]);
        } else {
            self.out.push(b'r');
            self.out.extend(self.memo.to_le_bytes());
        }
        self.memo += 1;
    }

    fn str(&mut self, text: &str) {
        if self.protocol >= 4 && text.len() < 256 {
            self.out.extend([0x8c, text.len() as u8]);
        } else {
            self.out.push(b'X');
            self.out.extend((text.len() as u32).to_le_bytes());
        }
        self.out.extend(text.as_bytes());
    }

    fn save(&mut self, value: &Value) {
        match value {
            Value::None => self.out.push(b'N'),
            Value::Bool(b) => self.out.push(if *b { 0x88 } else { 0x89 }),
            Value::Int(v) => match *v {
                0..=0xff => self.out.extend([b'K', *v as u8]),
                0x100..=0xffff => {
                    self.out.push(b'M');
                    self.out.extend((*v as u16).to_le_bytes());
                }
                v if i32::try_from(v).is_ok() => {
                    self.out.push(b'J');
                    self.out.extend((v as i32).to_le_bytes());
                }
                v => {
                    self.out.extend([0x8a, 8]);
                    self.out.extend(v.to_le_bytes());
                }
            },
            Value::Float(v) => {
                self.out.push(b'G');
                self.out.extend(v.to_be_bytes());
            }
            Value::Str(text) => {
                self.str(text);
                self.memoize();
            }
            Value::Bytes(bytes) if self.protocol < 3 => {
                // Python 3 under protocol 2: _codecs.encode(latin-1 text, 'latin1'), or bytes().
                if bytes.is_empty() {
                    self.out.extend(b"c__builtin__\nbytes\n)R");
                } else {
                    self.out.extend(b"c_codecs\nencode\n");
                    self.str(&bytes.iter().map(|&b| char::from(b)).collect::<String>());
                    self.str("latin1");
                    self.out.extend(b"\x86R");
                }
                self.memoize();
            }
            Value::Bytes(bytes) => {
                if bytes.len() < 256 {
                    self.out.extend([b'C', bytes.len() as u8]);
                } else {
                    self.out.push(b'B');
                    self.out.extend((bytes.len() as u32).to_le_bytes());
                }
                self.out.extend(bytes);
                self.memoize();
            }
            Value::List(items) => {
                self.out.push(b']');
                self.memoize();
                // CPython appends in batches of 1000; a single item uses APPEND.
                for batch in items.chunks(1000) {
                    if let [item] = batch {
                        self.save(item);
                        self.out.push(b'a');
                    } else {
                        self.out.push(b'(');
                        batch.iter().for_each(|item| self.save(item));
                        self.out.push(b'e');
                    }
                }
            }
            Value::Tuple(items) => {
                match items.len() {
                    0 => self.out.push(b')'),
                    n @ 1..=3 => {
                        items.iter().for_each(|item| self.save(item));
                        self.out.push(0x84 + n as u8);
                    }
                    _ => {
                        self.out.push(b'(');
                        items.iter().for_each(|item| self.save(item));
                        self.out.push(b't');
                    }
                }
                if !items.is_empty() {
                    self.memoize();
                }
            }
            Value::Dict(pairs) => {
                self.out.push(b'}');
                self.memoize();
                if !pairs.is_empty() {
                    self.out.push(b'(');
                    for (k, v) in pairs {
                        self.save(k);
                        self.save(v);
                    }
                    self.out.push(b'u');
                }
            }
            other => unimplemented!("not generated: {other:?}"),
        }
    }
}

fn plain_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::None),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::Int),
        (0i64..300).prop_map(Value::Int),
        any::<f64>().prop_filter("NaN never equals itself", |v| !v.is_nan()).prop_map(Value::Float),
        ".{0,12}".prop_map(Value::Str),
        proptest::collection::vec(any::<u8>(), 0..300).prop_map(Value::Bytes),
    ];
    leaf.prop_recursive(5, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::List),
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Tuple),
            proptest::collection::vec(("[a-z]{0,6}".prop_map(Value::Str), inner), 0..6).prop_map(Value::Dict),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn plain_values_round_trip(value in plain_value(), protocol in prop_oneof![Just(2u8), Just(4u8)]) {
        let stream = Pickler::dump(&value, protocol);
        let loaded = load(&stream).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(loaded.protocol, protocol);
        prop_assert_eq!(loaded.value, value);
    }

    #[test]
    fn every_prefix_of_a_valid_stream_is_an_error(value in plain_value()) {
        let stream = Pickler::dump(&value, 2);
        for cut in 0..stream.len() {
            prop_assert!(load(&stream[..cut]).is_err());
        }
    }
}

#[test]
fn long_lists_use_batched_appends() {
    let value = Value::List((0..2500).map(Value::Int).collect());
    for protocol in [2, 4] {
        assert_eq!(load(&Pickler::dump(&value, protocol)).unwrap().value, value);
    }
}
