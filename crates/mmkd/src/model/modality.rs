//! Names of modalities and of transformers, in the paper's notation `Y <- X`
//! (X gives the queries, Y gives keys and values).

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Modality {
    Video,
    Audio,
    Language,
}

impl Modality {
    pub const ALL: [Modality; 3] = [Modality::Video, Modality::Audio, Modality::Language];

    pub fn letter(self) -> char {
        match self {
            Modality::Video => 'V',
            Modality::Audio => 'A',
            Modality::Language => 'L',
        }
    }

    /// Lower-case name, as in messages and file formats ("video", "audio", "text").
    pub fn name(self) -> &'static str {
        match self {
            Modality::Video => "video",
            Modality::Audio => "audio",
            Modality::Language => "text",
        }
    }

    /// The two other modalities, in MulT's order (V, A, L minus self).
    pub fn others(self) -> [Modality; 2] {
        match self {
            Modality::Video => [Modality::Audio, Modality::Language],
            Modality::Audio => [Modality::Video, Modality::Language],
            Modality::Language => [Modality::Video, Modality::Audio],
        }
    }
}

/// One transformer of a network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum TransformerId {
    /// `keys <- queries`; `keys == queries` is self-attention (the student's `V_S <- V_S`).
    Cross { keys: Modality, queries: Modality },
    /// The self-attention ("temporal") transformer of the branch whose queries are this modality.
    Temporal(Modality),
}

impl TransformerId {
    pub const fn cross(keys: Modality, queries: Modality) -> Self {
        TransformerId::Cross { keys, queries }
    }
}

impl fmt::Display for TransformerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransformerId::Cross { keys, queries } => write!(f, "{}<-{}", keys.letter(), queries.letter()),
            TransformerId::Temporal(m) => write!(f, "{}-temporal", m.letter()),
        }
    }
}

impl std::str::FromStr for TransformerId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let letter = |c: &str| match c {
            "V" => Ok(Modality::Video),
            "A" => Ok(Modality::Audio),
            "L" => Ok(Modality::Language),
            _ => Err(format!("unknown modality '{c}' in transformer name '{s}' (use V, A or L)")),
        };
        if let Some((k, q)) = s.split_once("<-") {
            return Ok(TransformerId::cross(letter(k)?, letter(q)?));
        }
        if let Some(m) = s.strip_suffix("-temporal") {
            return Ok(TransformerId::Temporal(letter(m)?));
        }
        Err(format!("cannot read transformer name '{s}' (expected like 'A<-V' or 'V-temporal')"))
    }
}
