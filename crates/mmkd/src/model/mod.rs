//! Models: the attention module that exposes maps and post-attention outputs, MulT's encoder,
//! and the teacher and student networks built from them.

pub mod attention;
pub mod dropout;
pub mod encoder;
pub mod fused_attention;
pub mod fused_layer_norm;
pub mod head;
pub mod masks;
pub mod modality;
pub mod network;
pub mod params;
pub mod parts;

#[cfg(test)]
pub(crate) mod test_util;

pub use attention::{LayerTrace, Probe};
pub use encoder::{CrossModalEncoder, CrossModalEncoderConfig};
pub use modality::{CrossSides, Modality, TransformerId};
pub use network::{Body, BodySpec, FlatTransformer, MultimodalNet, NetOutput, StudentConfig, StudentStreams, TeacherKind, TraceRequest, build_student, build_teacher};
