//! The study of the paper's Table 1 as a list of independent runs. Each run is one `mmkd`
//! command line; runs share nothing but files, so the same plan runs in-process (a pool of
//! child processes), under GNU parallel, or as Slurm job arrays.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::choice::Choice;
use crate::config::{DeviceKind, Preset};
use crate::distill::{Level, Method, teacher_for_config};
use crate::model::StudentConfig;
use crate::model::TeacherKind;

/// One row of Table 1 (without seeds).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum RowSpec {
    /// A teacher trained on labels.
    Teacher(TeacherKind),
    /// A student trained on labels alone: configuration 5's is the paper's baseline for every
    /// row; configuration 1's is the within-configuration control of configuration 1's rows.
    StudentNoKd(StudentConfig),
    /// A student distilled from its configuration's teacher.
    Distilled {
        /// Student configuration (1..=5).
        config: StudentConfig,
        /// Where knowledge is distilled.
        level: Level,
        /// How it is distilled.
        method: Method,
    },
    /// A control: distilled as `Distilled` with the same loss, from the teacher's outputs for
    /// another clip of the batch, so the loss is kept and the clip's information removed.
    Control {
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
            RowSpec::StudentNoKd(config) => format!("student-c{config}-nokd"),
            RowSpec::Distilled { config, level, method } => format!("student-c{config}-{}-{}", level.name(), method.name()),
            RowSpec::Control { config, level, method } => format!("control-c{config}-{}-{}-shuffled", level.name(), method.name()),
        }
    }

    /// The teacher a distilled row learns from.
    pub fn teacher(&self) -> Option<TeacherKind> {
        match self {
            RowSpec::Distilled { config, .. } | RowSpec::Control { config, .. } => Some(teacher_for_config(*config)),
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
        RowSpec::StudentNoKd(StudentConfig::C5),
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

/// The paper's MOSEI figures (Acc-7 %, F1 %) for a row; `None` for a row the paper does not have
/// (the controls).
pub fn paper_figures(row: &RowSpec) -> Option<(f64, f64)> {
    use Level::*;
    use Method::*;
    Some(match row {
        RowSpec::StudentNoKd(StudentConfig::C5) => (41.296, 32.142),
        RowSpec::StudentNoKd(_) => return None,
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
            _ => return None,
        },
        RowSpec::Control { .. } => return None,
    })
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

/// Where a study's data comes from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum StudyData {
    /// Generated by `mmkd data synth` into `OUT/data` (docs/DATA.md).
    Synthetic {
        /// Data seed (one dataset per study; the study's seeds vary training).
        seed: u64,
        /// The generator's regime.
        regime: crate::data::synth::Regime,
        /// Training clips (`None`: the preset's).
        n_train: Option<usize>,
    },
    /// A MulT or MMSA pickle (absolute path), converted once into `OUT/data` by the streaming
    /// converter.
    Pickle {
        /// The pickle file.
        file: PathBuf,
    },
    /// A native dataset directory (absolute path), read in place.
    Native {
        /// The dataset directory.
        dir: PathBuf,
    },
}

impl std::fmt::Display for StudyData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StudyData::Synthetic { seed, regime, n_train } => {
                write!(f, "synthetic data (seed {seed}, regime {}{})", regime.name(), n_train.map_or(String::new(), |n| format!(", {n} training clips")))
            }
            StudyData::Pickle { file } => write!(f, "the pickle {}", file.display()),
            StudyData::Native { dir } => write!(f, "the native dataset {}", dir.display()),
        }
    }
}

impl StudyData {
    /// The user's data at `path`: a native directory (read in place) or a pickle file.
    pub fn from_path(path: &Path) -> std::io::Result<StudyData> {
        let abs = std::path::absolute(path)?;
        Ok(if abs.is_dir() { StudyData::Native { dir: abs } } else { StudyData::Pickle { file: abs } })
    }
}

/// Options shared by every run of a study (saved as `OUT/study.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StudyOptions {
    /// Preset of every run's model and recipe (and of the synthetic data's shape).
    pub preset: Preset,
    /// Training seeds; every row is run once per seed.
    pub seeds: Vec<u64>,
    /// The study directory.
    pub out: PathBuf,
    /// Epochs for every run (`None`: the preset's).
    pub epochs: Option<usize>,
    /// The data every run trains on.
    pub data: StudyData,
    /// Which rows of Table 1 to run.
    pub rows: RowSet,
    /// Train each teacher once, with this seed, and distil every seed's students from it
    /// (`None`: one teacher per seed, each seed's students from their own seed's teacher).
    pub teacher_seed: Option<u64>,
    /// Train this many teachers of each kind (seeds 1..=K), each teaching its own students of
    /// every seed, so that intervals can hold the teacher-to-teacher variation (`None`: as
    /// `teacher_seed` says).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teachers: Option<u64>,
    /// Epochs for the teachers (`None`: `epochs`).
    pub teacher_epochs: Option<usize>,
    /// Stop a teacher when its validation loss has not improved for this many epochs (`None`:
    /// train every epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teacher_early_stop: Option<usize>,
    /// Add the control rows: configuration 5's EDAM-S on the attention maps, distilled from the
    /// maps of another clip of the batch (the loss kept, the information removed).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub controls: bool,
    /// Branch dropout for the teachers (`None`: the preset's, 0; docs/DECISIONS.md).
    pub teacher_branch_dropout: Option<f64>,
    /// EDAM's direction in the EDAM rows (`literal`, eq. 13 as printed, unless asked).
    #[serde(default, skip_serializing_if = "is_literal")]
    pub edam_orientation: crate::distill::Orientation,
    /// The device every run computes on (passed to each run as `--device`).
    #[serde(default = "default_device")]
    pub device: DeviceKind,
}

fn is_literal(o: &crate::distill::Orientation) -> bool {
    *o == crate::distill::Orientation::Literal
}

fn default_device() -> DeviceKind {
    DeviceKind::Flex
}

/// The file a study's options are saved in: `--collect` checks runs against it.
pub const STUDY_FILE: &str = "study.json";

impl StudyOptions {
    /// The rows the study runs: its row set's, then the controls when asked (the shuffled-map
    /// row, and configuration 1's student without KD where configuration 1 is distilled).
    pub fn planned_rows(&self) -> Vec<RowSpec> {
        let mut rows = self.rows.rows();
        if self.controls {
            let c1 = rows.iter().any(|r| matches!(r, RowSpec::Distilled { config: StudentConfig::C1, .. }));
            rows.extend(control_rows().into_iter().filter(|r| c1 || *r != RowSpec::StudentNoKd(StudentConfig::C1)));
        }
        rows
    }

    /// The seeds teachers are trained with.
    pub fn teacher_seeds(&self) -> Vec<u64> {
        match (self.teachers, self.teacher_seed) {
            (Some(k), _) => (1..=k).collect(),
            (None, Some(s)) => vec![s],
            (None, None) => self.seeds.clone(),
        }
    }

    /// The teachers a distilled student of seed `seed` is trained from: every teacher with
    /// `teachers` (one student per teacher and seed), else the one teacher of its seed.
    pub fn teacher_seeds_for(&self, seed: u64) -> Vec<u64> {
        match (self.teachers, self.teacher_seed) {
            (Some(_), _) => self.teacher_seeds(),
            (None, Some(s)) => vec![s],
            (None, None) => vec![seed],
        }
    }

    /// The dataset directory every run reads: `OUT/data` for generated or converted data, the
    /// user's own directory for native data.
    pub fn data_dir(&self) -> PathBuf {
        match &self.data {
            StudyData::Native { dir } => dir.clone(),
            StudyData::Synthetic { .. } | StudyData::Pickle { .. } => self.out.join("data"),
        }
    }

    /// Read `OUT/study.json`; `None` for a study written before it existed.
    pub fn load(out: &Path) -> anyhow::Result<Option<StudyOptions>> {
        let path = out.join(STUDY_FILE);
        if !path.exists() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path)?;
        serde_json::from_str(&text).map(Some).map_err(|e| crate::error::input_error(format!("{}: {e}", path.display())))
    }
}

/// The control rows a study with `controls` adds: configuration 5's EDAM-S on the attention
/// maps with another clip's maps, and configuration 1's student without KD (planned only where
/// configuration 1 is distilled), so that configuration 1 is compared within its configuration.
pub fn control_rows() -> Vec<RowSpec> {
    vec![RowSpec::Control { config: StudentConfig::C5, level: Level::AttentionMap, method: Method::EdamS }, RowSpec::StudentNoKd(StudentConfig::C1)]
}

/// Which rows of Table 1 a study runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
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
crate::choice::impl_choice!(RowSet {
    All => "all", "Every row (19)";
    Attention => "attention", "The rows that say whether attention-level distillation passes on where to look: the complete teacher, the student without KD, and the attention-map rows that distil the complete teacher (c1 EDAM-S, c5 CRD, EDAM-S, EDAM-T)";
    C5Attention => "c5-attention", "As `attention`, without configuration 1 (whose student has all nine transformers and costs about twice a configuration-5 run): the complete teacher, the student without KD, and configuration 5's attention-map rows CRD, EDAM-S, EDAM-T. The README's main job.";
});

impl RowSet {
    /// The rows, in Table 1's order.
    pub fn rows(self) -> Vec<RowSpec> {
        table1_rows()
            .into_iter()
            .filter(|r| match self {
                RowSet::All => true,
                RowSet::Attention | RowSet::C5Attention => match r {
                    RowSpec::Teacher(t) => *t == TeacherKind::Complete,
                    RowSpec::StudentNoKd(_) | RowSpec::Control { .. } => true,
                    RowSpec::Distilled { level, config, .. } => {
                        *level == Level::AttentionMap && teacher_for_config(*config) == TeacherKind::Complete && (self == RowSet::Attention || *config == StudentConfig::C5)
                    }
                },
            })
            .collect()
    }
}

/// A row's run directory for one seed: `OUT/runs/<slug>-s<seed>`.
pub fn run_dir(out: &Path, row: &RowSpec, seed: u64) -> PathBuf {
    out.join("runs").join(format!("{}-s{seed}", row.slug()))
}

/// A distilled run's directory in a study with several teachers: `OUT/runs/<slug>-t<teacher>-s<seed>`.
pub fn student_run_dir(out: &Path, row: &RowSpec, teacher_seed: u64, seed: u64) -> PathBuf {
    out.join("runs").join(format!("{}-t{teacher_seed}-s{seed}", row.slug()))
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// The data step of a study (phase 0): generate or convert into `OUT/data`; none for a native
/// directory, which is read in place.
fn data_step(opts: &StudyOptions) -> Option<PlannedRun> {
    let data = opts.data_dir();
    let (seed, mut args): (u64, Vec<String>) = match &opts.data {
        StudyData::Native { .. } => return None,
        StudyData::Synthetic { seed, regime, n_train } => {
            let mut a: Vec<String> = vec!["data".into(), "synth".into(), "--preset".into(), opts.preset.name().into(), "--seed".into(), seed.to_string()];
            a.extend(["--regime".into(), regime.name().into()]);
            if let Some(n) = n_train {
                a.extend(["--n-train".into(), n.to_string()]);
            }
            (*seed, a)
        }
        StudyData::Pickle { file } => (0, vec!["data".into(), "convert".into(), s(file)]),
    };
    args.extend(["--out".into(), s(&data)]);
    Some(PlannedRun { phase: 0, row: None, seed, dir: data, args })
}

/// Every run of the study, teachers before the students that need them. Every line carries
/// `--device`, so a run computes where the study was told to, whoever starts it.
pub fn plan(opts: &StudyOptions) -> Vec<PlannedRun> {
    let data = opts.data_dir();
    let preset = opts.preset.name().to_string();
    let mut runs: Vec<PlannedRun> = data_step(opts).into_iter().collect();
    let epochs_arg = |e: Option<usize>| e.map(|e| vec!["--epochs".to_string(), e.to_string()]).unwrap_or_default();
    let epochs = epochs_arg(opts.epochs);
    let teacher_epochs = epochs_arg(opts.teacher_epochs.or(opts.epochs));
    let rows = opts.planned_rows();
    // Phase 1: the teachers, and the students without KD, which need no teacher (so they run
    // beside a teacher instead of waiting for it).
    for seed in opts.teacher_seeds() {
        for row in &rows {
            if let RowSpec::Teacher(kind) = row {
                let dir = run_dir(&opts.out, row, seed);
                let mut args = vec!["train", "teacher", "--branch", kind.name(), "--preset", &preset].into_iter().map(String::from).collect::<Vec<_>>();
                args.extend(["--data".into(), s(&data), "--seed".into(), seed.to_string(), "--out".into(), s(&dir)]);
                args.extend(teacher_epochs.clone());
                if let Some(n) = opts.teacher_early_stop {
                    args.extend(["--early-stop".into(), n.to_string()]);
                }
                if let Some(p) = opts.teacher_branch_dropout {
                    args.extend(["--branch-dropout".into(), p.to_string()]);
                }
                runs.push(PlannedRun { phase: 1, row: Some(*row), seed, dir, args });
            }
        }
    }
    for &seed in &opts.seeds {
        for row in &rows {
            // (teacher seed, run directory): one run per teacher of a distilled row.
            let targets: Vec<(Option<u64>, PathBuf)> = match row {
                RowSpec::Teacher(_) => continue,
                RowSpec::StudentNoKd(_) => vec![(None, run_dir(&opts.out, row, seed))],
                RowSpec::Distilled { .. } | RowSpec::Control { .. } => opts
                    .teacher_seeds_for(seed)
                    .into_iter()
                    .map(|t| (Some(t), if opts.teachers.is_some() { student_run_dir(&opts.out, row, t, seed) } else { run_dir(&opts.out, row, seed) }))
                    .collect(),
            };
            for (teacher_seed, dir) in targets {
                let phase = if matches!(row, RowSpec::StudentNoKd(_)) { 1 } else { 2 };
                let mut args: Vec<String> = match (row, teacher_seed) {
                    (RowSpec::Distilled { config, level, method } | RowSpec::Control { config, level, method }, Some(t)) => {
                        let teacher = run_dir(&opts.out, &RowSpec::Teacher(teacher_for_config(*config)), t);
                        let mut a = vec![
                            "distill".to_string(),
                            "--teacher".into(),
                            s(&teacher),
                            "--config".into(),
                            config.to_string(),
                            "--level".into(),
                            level.name().into(),
                            "--method".into(),
                            method.name().into(),
                        ];
                        if matches!(row, RowSpec::Control { .. }) {
                            a.extend(["--teacher-signal".into(), "shuffled".into()]);
                        }
                        if matches!(method, Method::EdamS | Method::EdamT) && !is_literal(&opts.edam_orientation) {
                            a.extend(["--orientation".into(), opts.edam_orientation.as_str().into()]);
                        }
                        a
                    }
                    (RowSpec::StudentNoKd(config), _) => {
                        vec!["train".to_string(), "student".into(), "--config".into(), config.to_string(), "--preset".into(), preset.clone(), "--data".into(), s(&data)]
                    }
                    _ => unreachable!("teachers are planned above; distilled rows have a teacher seed"),
                };
                args.extend(["--seed".into(), seed.to_string(), "--out".into(), s(&dir)]);
                args.extend(epochs.clone());
                runs.push(PlannedRun { phase, row: Some(*row), seed, dir, args });
            }
        }
    }
    // Stable: teachers stay first in phase 1 (the longest runs start first).
    runs.sort_by_key(|r| r.phase);
    for run in &mut runs {
        run.args.extend(["--device".into(), opts.device.name().into()]);
    }
    runs
}

/// Quote an argument for a POSIX shell.
pub fn shell_quote(a: &str) -> String {
    if !a.is_empty() && a.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:".contains(c)) { a.to_string() } else { format!("'{}'", a.replace('\'', r"'\''")) }
}

/// The run's shell command line, every argument quoted as needed.
pub fn command_line(exe: &str, run: &PlannedRun) -> String {
    std::iter::once(shell_quote(exe)).chain(run.args.iter().map(|a| shell_quote(a))).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_covers_table1_with_teachers_before_students() {
        let opts = StudyOptions {
            preset: Preset::Smoke,
            seeds: vec![1, 2, 3],
            out: PathBuf::from("/s"),
            epochs: Some(1),
            data: StudyData::Synthetic { seed: 1, regime: Default::default(), n_train: None },
            rows: RowSet::All,
            teacher_seed: None,
            teachers: None,
            teacher_early_stop: None,
            controls: false,
            teacher_epochs: None,
            teacher_branch_dropout: None,
            edam_orientation: Default::default(),
            device: DeviceKind::Flex,
        };
        let p = plan(&opts);
        assert_eq!(p.len(), 1 + 3 * 4 + 3 * 15, "data, 4 teachers and 15 student rows per seed");
        assert!(!p.iter().any(|r| r.args.contains(&"--orientation".to_string())), "literal by default, as distill's default");
        // --edam-orientation conventional reaches the EDAM rows' distill lines, and only those.
        let conventional = plan(&StudyOptions { edam_orientation: crate::distill::Orientation::Conventional, ..opts.clone() });
        for r in conventional.iter().filter(|r| r.args[0] == "distill") {
            let edam = r.args.iter().any(|a| a.starts_with("edam-"));
            assert_eq!(command_line("mmkd", r).contains("--orientation conventional"), edam, "{:?}", r.args);
        }
        assert!(p.windows(2).all(|w| w[0].phase <= w[1].phase));
        assert_eq!(table1_rows().len(), 19);
        let names: Vec<String> = RowSet::Attention.rows().iter().map(|r| r.slug()).collect();
        assert_eq!(
            names,
            ["student-c5-nokd", "teacher-complete", "student-c1-attention-map-edam-s", "student-c5-attention-map-crd", "student-c5-attention-map-edam-s", "student-c5-attention-map-edam-t"]
        );
        assert_eq!(RowSet::C5Attention.rows().len(), 5);
        assert!(!RowSet::C5Attention.rows().iter().any(|r| r.slug().starts_with("student-c1")));
        let line = command_line("mmkd", &p[p.len() - 1]);
        assert!(line.starts_with("mmkd distill --teacher /s/runs/teacher-complete-s3 --config 5 --level attention-map --method edam-t"), "{line}");
        assert!(line.ends_with("--epochs 1 --device flex"), "{line}");
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
            assert!(line.contains("--teacher /s/runs/teacher-complete-s2 ") && line.ends_with("--epochs 1 --device flex"), "{line}");
        }
    }

    /// K teachers each teach every seed: K teacher runs, and per distilled row (the control
    /// included) K x seeds runs in `<row>-t<teacher>-s<seed>`, each naming its teacher.
    #[test]
    fn several_teachers_each_teach_every_seed() {
        let opts = StudyOptions {
            preset: Preset::Smoke,
            seeds: vec![1, 2],
            out: PathBuf::from("/s"),
            epochs: None,
            data: StudyData::Synthetic { seed: 1, regime: Default::default(), n_train: None },
            rows: RowSet::C5Attention,
            teacher_seed: None,
            teachers: Some(3),
            teacher_early_stop: Some(2),
            controls: true,
            teacher_epochs: Some(9),
            teacher_branch_dropout: None,
            edam_orientation: Default::default(),
            device: DeviceKind::Flex,
        };
        let p = plan(&opts);
        let teachers: Vec<String> = p.iter().filter(|r| r.args[..2] == ["train", "teacher"]).map(|r| command_line("mmkd", r)).collect();
        assert_eq!(teachers.len(), 3);
        assert!(teachers[2].contains("--seed 3 --out /s/runs/teacher-complete-s3 --epochs 9 --early-stop 2"), "{}", teachers[2]);
        assert_eq!(p.iter().filter(|r| r.row == Some(RowSpec::StudentNoKd(StudentConfig::C5))).count(), 2, "no-KD students need no teacher");
        let distilled: Vec<String> = p.iter().filter(|r| r.args[0] == "distill").map(|r| command_line("mmkd", r)).collect();
        assert_eq!(distilled.len(), 4 * 3 * 2, "three attention-map rows and the control, 3 teachers, 2 seeds");
        assert!(distilled.iter().any(|l| l.contains("--teacher /s/runs/teacher-complete-s2 ") && l.contains("--out /s/runs/student-c5-attention-map-edam-t-t2-s1 ")));
        let controls: Vec<&String> = distilled.iter().filter(|l| l.contains("--teacher-signal shuffled")).collect();
        assert_eq!(controls.len(), 6);
        assert!(controls.iter().all(|l| l.contains("--method edam-s") && l.contains("/s/runs/control-c5-attention-map-edam-s-shuffled-t")));
        assert_eq!(opts.planned_rows().len(), 6, "no configuration-1 row, so no configuration-1 control");
        // With configuration 1 distilled, its own student without KD is planned (phase 1, no
        // teacher), so configuration 1 is compared within its configuration.
        let with_c1 = StudyOptions { rows: RowSet::Attention, ..opts };
        assert!(with_c1.planned_rows().contains(&RowSpec::StudentNoKd(StudentConfig::C1)));
        let p = plan(&with_c1);
        let c1: Vec<String> = p.iter().filter(|r| r.row == Some(RowSpec::StudentNoKd(StudentConfig::C1))).map(|r| command_line("mmkd", r)).collect();
        assert_eq!(c1.len(), 2);
        assert!(c1[0].starts_with("mmkd train student --config 1 --preset smoke") && c1[0].contains("--out /s/runs/student-c1-nokd-s1 "), "{}", c1[0]);
    }

    /// The user's data: a pickle is converted once into OUT/data (no synthesis), a native
    /// directory is read in place (no data step); every line carries the device.
    #[test]
    fn user_data_replaces_synthesis_and_every_line_names_the_device() {
        let base = StudyOptions {
            preset: Preset::Paper,
            seeds: vec![1, 2],
            out: PathBuf::from("/s"),
            epochs: None,
            data: StudyData::Pickle { file: PathBuf::from("/d/mosei.pkl") },
            rows: RowSet::C5Attention,
            teacher_seed: None,
            teachers: None,
            teacher_early_stop: None,
            controls: false,
            teacher_epochs: None,
            teacher_branch_dropout: None,
            edam_orientation: Default::default(),
            device: DeviceKind::Cuda,
        };
        let p = plan(&base);
        assert_eq!(command_line("mmkd", &p[0]), "mmkd data convert /d/mosei.pkl --out /s/data --device cuda");
        assert!(p.iter().all(|r| r.args.ends_with(&["--device".to_string(), "cuda".to_string()])));
        assert!(p[1..].iter().all(|r| r.args.windows(2).any(|w| w == ["--data", "/s/data"]) || r.args[0] == "distill"));
        assert!(!p.iter().any(|r| r.args[..2] == ["data", "synth"]));
        let native = StudyOptions { data: StudyData::Native { dir: PathBuf::from("/d/native") }, ..base };
        let p = plan(&native);
        assert!(p.iter().all(|r| r.phase > 0), "no data step");
        assert!(p.iter().filter(|r| r.args[0] == "train").all(|r| r.args.windows(2).any(|w| w == ["--data", "/d/native"])));
        assert_eq!(native.data_dir(), PathBuf::from("/d/native"));
        let back: StudyOptions = serde_json::from_str(&serde_json::to_string(&native).unwrap()).unwrap();
        assert_eq!(back, native, "study.json round trip");
    }
}
