//! Output shapes and traces of every teacher and student configuration.

use burn::prelude::*;
use mmkd::config::{DataShape, ModelConfig, Preset};
use mmkd::data::synth::{SynthParams, generate};
use mmkd::model::{Modality, Probe, StudentStreams, TeacherKind, TraceRequest, TransformerId, build_student, build_teacher};

fn setup() -> (DataShape, ModelConfig, mmkd::data::Dataset) {
    let shape = DataShape { n_train: 4, n_valid: 2, n_test: 2, ..DataShape::for_preset(Preset::Smoke) };
    let model = ModelConfig::for_preset(Preset::Smoke);
    let (d, _) = generate(Preset::Smoke, 1, &shape, &SynthParams::default());
    (shape, model, d)
}

fn all_probed(ids: Vec<TransformerId>) -> TraceRequest {
    TraceRequest { probe: Probe { map_temperature: Some(1.0), post_attention: true }, transformers: ids.into_iter().collect() }
}

#[test]
fn teachers_give_logits_penultimate_and_maps_of_the_right_shapes() {
    let (shape, cfg, data) = setup();
    let device = Device::flex();
    let batch = data.train.batch(&shape, &[0, 1, 2], &device);
    let len = |m: Modality| match m {
        Modality::Video => shape.video_len,
        Modality::Audio => shape.audio_len,
        Modality::Text => shape.text_len,
    };
    for kind in [TeacherKind::Complete, TeacherKind::Video, TeacherKind::Audio, TeacherKind::Language] {
        let net = build_teacher(kind, &shape, &cfg, &device);
        let ids = net.transformers();
        assert_eq!(ids.len(), if kind == TeacherKind::Complete { 9 } else { 3 });
        let out = net.forward(&batch.input, &all_probed(ids.clone()));
        let branches = if kind == TeacherKind::Complete { 3 } else { 1 };
        assert_eq!(out.logits.dims(), [3, 7]);
        assert_eq!(out.penultimate.dims(), [3, branches * cfg.d_model]);
        assert_eq!(out.traces.len(), ids.len());
        for (id, layers) in &out.traces {
            assert_eq!(layers.len(), cfg.layers, "{id}");
            let (lq, lk) = match *id {
                TransformerId::Cross { keys, queries } => (len(queries), len(keys)),
                TransformerId::Temporal(m) => (len(m), len(m)),
            };
            assert_eq!(layers[0].map.as_ref().unwrap().dims(), [3, lq, lk], "{kind:?} {id}");
            assert_eq!(layers[0].post_attention.as_ref().unwrap().dims(), [3, lq, cfg.d_model]);
        }
        // Without a request nothing is traced.
        assert!(net.forward(&batch.input, &TraceRequest::none()).traces.is_empty());
    }
}

#[test]
fn traces_alone_equal_the_full_forward_traces() {
    // What a frozen teacher computes at the attention-map and post-attention levels: only the
    // traced transformers (and a branch's cross transformers under a traced temporal one).
    let (shape, cfg, data) = setup();
    let device = Device::flex();
    let batch = data.train.batch(&shape, &[0, 1, 2], &device);
    let teacher = build_teacher(TeacherKind::Complete, &shape, &cfg, &device);
    let student = build_student(mmkd::model::StudentConfig::C5, StudentStreams::Downsampled, &shape, &cfg, &device);
    use Modality::{Audio as A, Text as L, Video as V};
    for (net, ids) in [
        (&teacher, vec![TransformerId::cross(V, A), TransformerId::cross(V, L)]),
        (&teacher, vec![TransformerId::Temporal(V), TransformerId::cross(L, A)]),
        (&student, vec![TransformerId::cross(V, A)]),
    ] {
        let request = all_probed(ids.clone());
        let full = net.forward(&batch.input, &request).traces;
        let alone = net.traces(&batch.input, &request);
        assert_eq!(alone.keys().collect::<Vec<_>>(), full.keys().collect::<Vec<_>>());
        for id in &ids {
            for (a, b) in alone[id].iter().zip(&full[id]) {
                let (a_map, b_map) = (a.map.clone().unwrap().into_data(), b.map.clone().unwrap().into_data());
                assert_eq!(a_map, b_map, "{id}: maps differ");
                assert_eq!(a.post_attention.clone().unwrap().into_data(), b.post_attention.clone().unwrap().into_data(), "{id}");
            }
        }
    }
}

#[test]
fn students_of_all_five_configurations_see_video_only_with_both_stream_modes() {
    let (shape, cfg, data) = setup();
    let device = Device::flex();
    let batch = data.train.batch(&shape, &[0, 1], &device);
    // Without audio and text at all a student computes the same output: it only reads video
    // (reading either would panic on the missing input).
    let mut blind = batch.clone();
    blind.input.audio = None;
    blind.input.text = None;
    for config in mmkd::model::StudentConfig::ALL {
        for streams in [StudentStreams::Downsampled, StudentStreams::FullLength] {
            let net = build_student(config, streams, &shape, &cfg, &device);
            let ids = net.transformers();
            assert_eq!(ids.len(), if config == mmkd::model::StudentConfig::C1 { 9 } else { 3 });
            let out = net.forward(&batch.input, &all_probed(ids));
            assert_eq!(out.logits.dims(), [2, 7]);
            let (la, ll) = match streams {
                StudentStreams::Downsampled => (shape.audio_len, shape.text_len),
                StudentStreams::FullLength => (shape.video_len, shape.video_len),
            };
            for (id, layers) in &out.traces {
                if let TransformerId::Cross { keys, queries } = *id {
                    let l = |m| match m {
                        Modality::Video => shape.video_len,
                        Modality::Audio => la,
                        Modality::Text => ll,
                    };
                    assert_eq!(layers[0].map.as_ref().unwrap().dims(), [2, l(queries), l(keys)], "config {config} {id}");
                }
            }
            // Both without probes, so both take the same attention path (fused on flex).
            let a: Vec<f32> = net.forward(&batch.input, &TraceRequest::none()).logits.into_data().try_to_vec().unwrap();
            let b: Vec<f32> = net.forward(&blind.input, &TraceRequest::none()).logits.into_data().try_to_vec().unwrap();
            assert_eq!(a, b, "config {config}: the student must not read audio or text");
        }
    }
}

#[test]
fn student_transformers_follow_section_4_2() {
    use Modality::{Audio as A, Text as L, Video as V};
    let c = TransformerId::cross;
    let body = |k: u8| mmkd::model::StudentConfig::try_from(k).unwrap().body().transformers();
    assert_eq!(body(2), vec![c(V, V), c(A, V), c(L, V)]);
    assert_eq!(body(3), vec![c(V, V), c(V, L), c(A, L)]);
    assert_eq!(body(4), vec![c(V, V), c(V, A), c(L, A)]);
    assert_eq!(body(5), vec![c(V, V), c(V, L), c(V, A)]);
    assert_eq!(body(1), TeacherKind::Complete.body().transformers());
    assert_eq!("A<-V".parse::<TransformerId>().unwrap(), c(A, V));
    assert_eq!(c(V, L).to_string(), "V<-L");
}
