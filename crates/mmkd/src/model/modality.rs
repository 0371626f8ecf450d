//! Names of modalities and of transformers, in the paper's notation `Y <- X`
//! (X gives the queries, Y gives keys and values).

use std::fmt;

use serde::{Deserialize, Serialize};

pub use crate::input::Modality;

/// One transformer of a network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum TransformerId {
    /// `keys <- queries`; `keys == queries` is self-attention (the student's `V_S <- V_S`).
    Cross {
        /// The modality giving keys and values (Y in `Y <- X`).
        keys: Modality,
        /// The modality giving queries (X in `Y <- X`).
        queries: Modality,
    },
    /// The self-attention ("temporal") transformer of the branch whose queries are this modality.
    Temporal(Modality),
}

/// The two sides of a cross-modal transformer `keys <- queries`: what a flat body's transformers
/// are (a flat body has no temporal transformer, and this type cannot name one).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CrossSides {
    /// The modality giving keys and values.
    pub keys: Modality,
    /// The modality giving queries.
    pub queries: Modality,
}

impl CrossSides {
    /// The transformer's name.
    pub const fn id(self) -> TransformerId {
        TransformerId::Cross { keys: self.keys, queries: self.queries }
    }
}

impl TransformerId {
    /// The cross-modal transformer `keys <- queries`.
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
            "L" => Ok(Modality::Text),
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
