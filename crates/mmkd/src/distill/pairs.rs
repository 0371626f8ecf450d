//! The teacher transformers distilled into student transformers, per configuration
//! (METHOD.md, "Student configurations"). Student transformers carry the same names with the
//! student's streams (`A<-V` in the student is `A_S <- V_S`).

use crate::model::{Modality, TeacherKind, TransformerId};

/// The teacher each configuration distils from.
pub fn teacher_for_config(config: u8) -> TeacherKind {
    match config {
        1 | 5 => TeacherKind::Complete,
        2 => TeacherKind::Video,
        3 => TeacherKind::Language,
        4 => TeacherKind::Audio,
        other => panic!("student configuration {other} does not exist (1..=5)"),
    }
}

/// (teacher transformer, student transformer) pairs.
pub fn distilled_pairs(config: u8) -> Vec<(TransformerId, TransformerId)> {
    use Modality::{Audio as A, Language as L, Video as V};
    let c = TransformerId::cross;
    let same = |ids: Vec<TransformerId>| ids.into_iter().map(|id| (id, id)).collect();
    match config {
        1 => same(TeacherKind::Complete.body().transformers()),
        2 => same(vec![c(A, V), c(L, V)]),
        3 => same(vec![c(V, L), c(A, L)]),
        4 => same(vec![c(V, A), c(L, A)]),
        5 => same(vec![c(V, A), c(V, L)]),
        other => panic!("student configuration {other} does not exist (1..=5)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::student_body;

    #[test]
    fn pairs_match_method_md() {
        let names = |k| distilled_pairs(k).iter().map(|(t, s)| format!("{t}>{s}")).collect::<Vec<_>>();
        assert_eq!(names(2), ["A<-V>A<-V", "L<-V>L<-V"]);
        assert_eq!(names(3), ["V<-L>V<-L", "A<-L>A<-L"]);
        assert_eq!(names(4), ["V<-A>V<-A", "L<-A>L<-A"]);
        assert_eq!(names(5), ["V<-A>V<-A", "V<-L>V<-L"]);
        assert_eq!(distilled_pairs(1).len(), 9);
        // Every pair exists in both networks.
        for k in 1..=5u8 {
            let teacher = teacher_for_config(k).body().transformers();
            let student = student_body(k).transformers();
            for (t, s) in distilled_pairs(k) {
                assert!(teacher.contains(&t), "config {k}: teacher lacks {t}");
                assert!(student.contains(&s), "config {k}: student lacks {s}");
            }
        }
    }
}
