//! The teacher transformers distilled into student transformers, per configuration
//! (METHOD.md, "Student configurations"). Student transformers carry the same names with the
//! student's streams (`A<-V` in the student is `A_S <- V_S`).

use crate::model::{Modality, StudentConfig, TeacherKind, TransformerId};

/// The teacher each configuration distils from.
pub fn teacher_for_config(config: StudentConfig) -> TeacherKind {
    match config {
        StudentConfig::C1 | StudentConfig::C5 => TeacherKind::Complete,
        StudentConfig::C2 => TeacherKind::Video,
        StudentConfig::C3 => TeacherKind::Language,
        StudentConfig::C4 => TeacherKind::Audio,
    }
}

/// (teacher transformer, student transformer) pairs.
pub fn distilled_pairs(config: StudentConfig) -> Vec<(TransformerId, TransformerId)> {
    use Modality::{Audio as A, Text as L, Video as V};
    let c = TransformerId::cross;
    let same = |ids: Vec<TransformerId>| ids.into_iter().map(|id| (id, id)).collect();
    match config {
        StudentConfig::C1 => same(TeacherKind::Complete.body().transformers()),
        StudentConfig::C2 => same(vec![c(A, V), c(L, V)]),
        StudentConfig::C3 => same(vec![c(V, L), c(A, L)]),
        StudentConfig::C4 => same(vec![c(V, A), c(L, A)]),
        StudentConfig::C5 => same(vec![c(V, A), c(V, L)]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_match_method_md() {
        let names = |k: u8| distilled_pairs(StudentConfig::try_from(k).unwrap()).iter().map(|(t, s)| format!("{t}>{s}")).collect::<Vec<_>>();
        assert_eq!(names(2), ["A<-V>A<-V", "L<-V>L<-V"]);
        assert_eq!(names(3), ["V<-L>V<-L", "A<-L>A<-L"]);
        assert_eq!(names(4), ["V<-A>V<-A", "L<-A>L<-A"]);
        assert_eq!(names(5), ["V<-A>V<-A", "V<-L>V<-L"]);
        assert_eq!(distilled_pairs(StudentConfig::C1).len(), 9);
        // Every pair exists in both networks.
        for k in StudentConfig::ALL {
            let teacher = teacher_for_config(k).body().transformers();
            let student = k.body().transformers();
            for (t, s) in distilled_pairs(k) {
                assert!(teacher.contains(&t), "config {k}: teacher lacks {t}");
                assert!(student.contains(&s), "config {k}: student lacks {s}");
            }
        }
    }
}

#[cfg(test)]
mod config_tests {
    use crate::model::StudentConfig;

    #[test]
    fn configurations_are_numbers_in_files_and_refuse_others() {
        assert_eq!(serde_json::to_string(&StudentConfig::C5).unwrap(), "5");
        assert_eq!(serde_json::from_str::<StudentConfig>("3").unwrap(), StudentConfig::C3);
        let e = serde_json::from_str::<StudentConfig>("7").unwrap_err().to_string();
        assert!(e.contains("student configuration 7 does not exist (1..=5)"), "{e}");
        assert_eq!("2".parse::<StudentConfig>(), Ok(StudentConfig::C2));
        assert!("0".parse::<StudentConfig>().is_err() && "x".parse::<StudentConfig>().is_err());
    }
}
