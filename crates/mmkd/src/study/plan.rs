//! The study of the paper's Table 1 as a list of independent runs. Each run is one `mmkd`
//! command line; runs share nothing but files, so the same plan runs in-process (a pool of
//! child processes), under GNU parallel, or as Slurm job arrays.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::Preset;
use crate::distill::{Level, Method, teacher_for_config};
use crate::model::StudentConfig;
use crate::model::TeacherKind;

/// One row of Table 1 (without seeds).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum RowSpec {
    /// A teacher trained on labels.
    Teacher(TeacherKind),
    /// The student of configuration 5 trained on labels alone.
    StudentNoKd,
    /// A student distilled from its configuration's teacher.
    Distilled {
        /// Student configuration (1..=5).
        config: StudentConfig,
        /// Where knowledge is distilled.
        level: Level,
        /// How it is distilled.
        method: Method,
    },
}

impl RowSpec {
    /// The row's name in run directories (`teacher-complete`, `student-c5-attention-map-edam-s`).
    pub fn slug(&self) -> String {
        match self {
            RowSpec::Teacher(k) => format!("teacher-{}", k.name()),
            RowSpec::StudentNoKd => "student-c5-nokd".to_string(),
            RowSpec::Distilled { config, level, method } => format!("student-c{config}-{}-{}", level.name(), method.name()),
        }
    }

    /// The teacher a distilled row learns from.
    pub fn teacher(&self) -> Option<TeacherKind> {
        match self {
            RowSpec::Distilled { config, .. } => Some(teacher_for_config(*config)),
            _ => None,
        }
    }
}

/// The paper's Table 1, in its order (the complete teacher appears once here; the report
/// repeats it above configuration 5 as the paper does).
pub fn table1_rows() -> Vec<RowSpec> {
    use Level::*;
    use Method::*;
    let d = |config: u8, level, method| RowSpec::Distilled { config: StudentConfig::try_from(config).expect("1..=5"), level, method };
    vec![
        RowSpec::StudentNoKd,
        RowSpec::Teacher(TeacherKind::Complete),
        d(1, AttentionMap, EdamS),
        RowSpec::Teacher(TeacherKind::Video),
        d(2, Final, Crd),
        d(2, Penultimate, Crd),
        d(2, AttentionMap, Crd),
        RowSpec::Teacher(TeacherKind::Language),
        d(3, Final, Crd),
        d(3, Penultimate, Crd),
        RowSpec::Teacher(TeacherKind::Audio),
        d(4, Final, Crd),
        d(4, Penultimate, Crd),
        d(5, Final, Crd),
        d(5, Penultimate, Crd),
        d(5, PostAttention, Crd),
        d(5, AttentionMap, Crd),
        d(5, AttentionMap, EdamS),
        d(5, AttentionMap, EdamT),
    ]
}

/// The paper's MOSEI figures (Acc-7 %, F1 %) for a row.
pub fn paper_figures(row: &RowSpec) -> (f64, f64) {
    use Level::*;
    use Method::*;
    match row {
        RowSpec::StudentNoKd => (41.296, 32.142),
        RowSpec::Teacher(TeacherKind::Complete) => (49.779, 48.817),
        RowSpec::Teacher(TeacherKind::Video) => (49.621, 48.542),
        RowSpec::Teacher(TeacherKind::Language) => (49.217, 47.250),
        RowSpec::Teacher(TeacherKind::Audio) => (49.217, 47.232),
        RowSpec::Distilled { config, level, method } => match (config.number(), level, method) {
            (1, AttentionMap, EdamS) => (44.137, 36.286),
            (2, Final, Crd) => (43.711, 33.281),
            (2, Penultimate, Crd) => (42.576, 35.565),
            (2, AttentionMap, Crd) => (43.837, 35.912),
            (3, Final, Crd) => (43.154, 32.863),
            (3, Penultimate, Crd) => (42.901, 34.467),
            (4, Final, Crd) => (43.584, 33.260),
            (4, Penultimate, Crd) => (43.232, 35.115),
            (5, Final, Crd) => (42.731, 32.513),
            (5, Penultimate, Crd) => (43.732, 35.632),
            (5, PostAttention, Crd) => (43.837, 35.711),
            (5, AttentionMap, Crd) => (44.031, 36.110),
            (5, AttentionMap, EdamS) => (44.231, 36.332),
            (5, AttentionMap, EdamT) => (43.993, 36.189),
            _ => (f64::NAN, f64::NAN),
        },
    }
}

/// One run of the study: its directory and the command line that makes it.
#[derive(Clone, Debug)]
pub struct PlannedRun {
    /// 0 = data, 1 = teachers, 2 = students (a phase depends on the ones before it).
    pub phase: usize,
    /// The Table 1 row it produces; `None` for the data step.
    pub row: Option<RowSpec>,
    /// Training seed (the data seed for the data step).
    pub seed: u64,
    /// The directory the run writes.
    pub dir: PathBuf,
    /// `mmkd` arguments, without the executable.
    pub args: Vec<String>,
}

/// Options shared by every run of a study.
#[derive(Clone, Debug)]
pub struct StudyOptions {
    /// Preset of the data and every run.
    pub preset: Preset,
    /// Training seeds; every row is run once per seed.
    pub seeds: Vec<u64>,
    /// The study directory.
    pub out: PathBuf,
    /// Epochs for every run (`None`: the preset's).
    pub epochs: Option<usize>,
    /// Data seed (one dataset per study; seeds vary training).
    pub data_seed: u64,
    /// The synthetic data's regime.
    pub regime: crate::data::synth::Regime,
    /// Training clips of the synthetic data (`None`: the preset's).
    pub n_train: Option<usize>,
    /// Which rows of Table 1 to run.
    pub rows: RowSet,
    /// Train each teacher once, with this seed, and distil every seed's students from it
    /// (`None`: one teacher per seed, each seed's students from their own seed's teacher).
    pub teacher_seed: Option<u64>,
    /// Epochs for the teachers (`None`: `epochs`).
    pub teacher_epochs: Option<usize>,
    /// Branch dropout for the teachers (`None`: the preset's, 0; docs/DECISIONS.md).
    pub teacher_branch_dropout: Option<f64>,
}

impl StudyOptions {
    /// The seeds teachers are trained with.
    pub fn teacher_seeds(&self) -> Vec<u64> {
        self.teacher_seed.map_or_else(|| self.seeds.clone(), |s| vec![s])
    }

    /// The seed of the teacher a student of seed `seed` learns from.
    pub fn teacher_seed_for(&self, seed: u64) -> u64 {
        self.teacher_seed.unwrap_or(seed)
    }
}

/// Which rows of Table 1 a study runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum RowSet {
    /// Every row (19).
    #[default]
    All,
    /// The rows that say whether attention-level distillation passes on where to look: the
    /// complete teacher, the student without KD, and the attention-map rows that distil the
    /// complete teacher (c1 EDAM-S, c5 CRD, EDAM-S, EDAM-T).
    Attention,
    /// As `attention`, without configuration 1 (whose student has all nine transformers and
    /// costs about twice a configuration-5 run): the complete teacher, the student without KD,
    /// and configuration 5's attention-map rows CRD, EDAM-S, EDAM-T. The README's main job.
    C5Attention,
}

impl RowSet {
    /// The rows, in Table 1's order.
    pub fn rows(self) -> Vec<RowSpec> {
        table1_rows()
            .into_iter()
            .filter(|r| match self {
                RowSet::All => true,
                RowSet::Attention | RowSet::C5Attention => match r {
                    RowSpec::Teacher(t) => *t == TeacherKind::Complete,
                    RowSpec::StudentNoKd => true,
                    RowSpec::Distilled { level, config, .. } => {
                        *level == Level::AttentionMap && teacher_for_config(*config) == TeacherKind::Complete && (self == RowSet::Attention || *config == StudentConfig::C5)
                    }
                },
            })
            .collect()
    }
}

/// Where the study's dataset is generated: `OUT/data`.
pub fn data_dir(out: &Path) -> PathBuf {
    out.join("data")
}

/// A row's run directory for one seed: `OUT/runs/<slug>-s<seed>`.
pub fn run_dir(out: &Path, row: &RowSpec, seed: u64) -> PathBuf {
    out.join("runs").join(format!("{}-s{seed}", row.slug()))
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// Every run of the study, teachers before the students that need them.
pub fn plan(opts: &StudyOptions) -> Vec<PlannedRun> {
    let data = data_dir(&opts.out);
    let preset = opts.preset.name().to_string();
    let mut runs = vec![PlannedRun {
        phase: 0,
        row: None,
        seed: opts.data_seed,
        dir: data.clone(),
        args: {
            let mut a: Vec<String> = vec!["data".into(), "synth".into(), "--preset".into(), preset.clone(), "--seed".into(), opts.data_seed.to_string()];
            a.extend(["--regime".into(), opts.regime.name().into()]);
            if let Some(n) = opts.n_train {
                a.extend(["--n-train".into(), n.to_string()]);
            }
            a.extend(["--out".into(), s(&data)]);
            a
        },
    }];
    let epochs_arg = |e: Option<usize>| e.map(|e| vec!["--epochs".to_string(), e.to_string()]).unwrap_or_default();
    let epochs = epochs_arg(opts.epochs);
    let teacher_epochs = epochs_arg(opts.teacher_epochs.or(opts.epochs));
    let rows = opts.rows.rows();
    // Phase 1: the teachers, and the students without KD, which need no teacher (so they run
    // beside a teacher instead of waiting for it).
    for seed in opts.teacher_seeds() {
        for row in &rows {
            if let RowSpec::Teacher(kind) = row {
                let dir = run_dir(&opts.out, row, seed);
                let mut args = vec!["train", "teacher", "--branch", kind.name(), "--preset", &preset].into_iter().map(String::from).collect::<Vec<_>>();
                args.extend(["--data".into(), s(&data), "--seed".into(), seed.to_string(), "--out".into(), s(&dir)]);
                args.extend(teacher_epochs.clone());
                if let Some(p) = opts.teacher_branch_dropout {
                    args.extend(["--branch-dropout".into(), p.to_string()]);
                }
                runs.push(PlannedRun { phase: 1, row: Some(*row), seed, dir, args });
            }
        }
    }
    for &seed in &opts.seeds {
        for row in &rows {
            let dir = run_dir(&opts.out, row, seed);
            let phase = if *row == RowSpec::StudentNoKd { 1 } else { 2 };
            let mut args: Vec<String> = match row {
                RowSpec::Teacher(_) => continue,
                RowSpec::StudentNoKd => vec!["train", "student", "--config", "5", "--preset", &preset, "--data", &s(&data)].into_iter().map(String::from).collect(),
                RowSpec::Distilled { config, level, method } => {
                    let teacher = run_dir(&opts.out, &RowSpec::Teacher(teacher_for_config(*config)), opts.teacher_seed_for(seed));
                    vec![
                        "distill".to_string(),
                        "--teacher".into(),
                        s(&teacher),
                        "--config".into(),
                        config.to_string(),
                        "--level".into(),
                        level.name().into(),
                        "--method".into(),
                        method.name().into(),
                    ]
                }
            };
            args.extend(["--seed".into(), seed.to_string(), "--out".into(), s(&dir)]);
            args.extend(epochs.clone());
            runs.push(PlannedRun { phase, row: Some(*row), seed, dir, args });
        }
    }
    // Stable: teachers stay first in phase 1 (the longest runs start first).
    runs.sort_by_key(|r| r.phase);
    runs
}

/// Quote an argument for a POSIX shell.
pub fn shell_quote(a: &str) -> String {
    if !a.is_empty() && a.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:".contains(c)) {
        a.to_string()
    } else {
        format!("'{}'", a.replace('\'', r"'\''"))
    }
}

/// The run's shell command line, every argument quoted as needed.
pub fn command_line(exe: &str, run: &PlannedRun) -> String {
    std::iter::once(shell_quote(exe)).chain(run.args.iter().map(|a| shell_quote(a))).collect::<Vec<_>>().join(" ")
}

/// A Slurm script: one job array per phase, each phase after the previous one succeeded.
pub fn slurm_script(out: &Path) -> String {
    format!(
        r#"#!/usr/bin/env bash
# Submit the study as three Slurm job arrays: data, then teachers, then students.
# Each array task runs one line of {out}/plan-<phase>.txt. Edit the #SBATCH defaults to taste.
set -euo pipefail
cd "$(dirname "$0")"
submit() {{ # phase file, dependency
  local n; n=$(wc -l < "$1")
  sbatch --parsable --array=1-"$n" ${{2:+--dependency=afterok:$2}} --cpus-per-task=2 --time=02:00:00 \
    --output=logs/%x-%A_%a.out --wrap "bash -c \"\$(sed -n \${{SLURM_ARRAY_TASK_ID}}p $1)\""
}}
mkdir -p logs
d=$(submit plan-0.txt)
t=$(submit plan-1.txt "$d")
s=$(submit plan-2.txt "$t")
echo "submitted: data $d, teachers $t, students $s; then: mmkd study --collect {out}"
"#,
        out = out.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_covers_table1_with_teachers_before_students() {
        let opts = StudyOptions { preset: Preset::Smoke, seeds: vec![1, 2, 3], out: PathBuf::from("/s"), epochs: Some(1), data_seed: 1, regime: Default::default(), n_train: None, rows: RowSet::All, teacher_seed: None, teacher_epochs: None, teacher_branch_dropout: None };
        let p = plan(&opts);
        assert_eq!(p.len(), 1 + 3 * 4 + 3 * 15, "data, 4 teachers and 15 student rows per seed");
        assert!(p.windows(2).all(|w| w[0].phase <= w[1].phase));
        assert_eq!(table1_rows().len(), 19);
        let names: Vec<String> = RowSet::Attention.rows().iter().map(|r| r.slug()).collect();
        assert_eq!(names, ["student-c5-nokd", "teacher-complete", "student-c1-attention-map-edam-s", "student-c5-attention-map-crd", "student-c5-attention-map-edam-s", "student-c5-attention-map-edam-t"]);
        assert_eq!(RowSet::C5Attention.rows().len(), 5);
        assert!(!RowSet::C5Attention.rows().iter().any(|r| r.slug().starts_with("student-c1")));
        let line = command_line("mmkd", &p[p.len() - 1]);
        assert!(line.starts_with("mmkd distill --teacher /s/runs/teacher-complete-s3 --config 5 --level attention-map --method edam-t"), "{line}");
        assert!(line.ends_with("--epochs 1"));
        assert_eq!(shell_quote("a b'c"), "'a b'\\''c'");
        // One teacher for every seed's students, with its own epochs.
        let one = StudyOptions { teacher_seed: Some(2), teacher_epochs: Some(7), teacher_branch_dropout: Some(0.5), rows: RowSet::Attention, ..opts };
        let p = plan(&one);
        let teachers: Vec<&PlannedRun> = p.iter().filter(|r| r.args[..2] == ["train", "teacher"]).collect();
        assert_eq!(teachers.len(), 1, "one complete teacher");
        assert!(command_line("mmkd", teachers[0]).contains("--seed 2 --out /s/runs/teacher-complete-s2 --epochs 7 --branch-dropout 0.5"));
        assert_eq!(p.iter().filter(|r| r.phase == 1).count(), 1 + 3, "the teacher, then the no-KD students beside it");
        assert_eq!(p.iter().filter(|r| r.phase == 2).count(), 3 * 4, "four distilled rows per seed");
        for r in p.iter().filter(|r| r.phase == 2 && r.args[0] == "distill") {
            let line = command_line("mmkd", r);
            assert!(line.contains("--teacher /s/runs/teacher-complete-s2 ") && line.ends_with("--epochs 1"), "{line}");
        }
    }
}
