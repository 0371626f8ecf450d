//! Assemble Table 1 from finished run directories: mean +- std over seeds, parameter counts,
//! latency, the paper's MOSEI figures in their own columns, and the dataset's name.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::plan::{RowSpec, paper_figures, table1_rows};
use crate::choice::Choice;
use crate::distill::{Level, Method};
use crate::eval::EvalReport;
use crate::model::{StudentConfig, TeacherKind};
use crate::run::{RunConfig, RunRole};

/// One row of the reproduced Table 1, aggregated over seeds. Acc and F1 figures are percent.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TableRow {
    /// A teacher or a student.
    pub role: RowRole,
    /// Student configuration; `None` for teachers.
    pub config: Option<StudentConfig>,
    /// The teacher: the network itself, or the one a student learns from (`complete` without KD).
    pub teacher: TeacherKind,
    /// Distillation level; `None` (`"none"` in the files) without KD.
    #[serde(with = "none_as_text")]
    pub level: Option<Level>,
    /// Distillation method; `None` (`"none"` in the files) without KD.
    #[serde(with = "none_as_text")]
    pub method: Option<Method>,
    /// A control row: distilled from another clip's teacher outputs (`--teacher-signal shuffled`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub control: bool,
    /// EDAM's direction where it is not eq. 13 as printed (`study --edam-orientation
    /// conventional`); absent for literal EDAM rows and rows without EDAM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edam_orientation: Option<crate::distill::Orientation>,
    /// The configuration of the student without KD a distilled row is compared with, when it is
    /// not configuration 5's (configuration 1's own control).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nokd_config: Option<StudentConfig>,
    /// Mean test Acc-7 over seeds (%).
    pub acc7_mean: f64,
    /// Sample standard deviation of Acc-7 over seeds (points).
    pub acc7_std: f64,
    /// Mean test weighted F1 over seeds (%).
    pub f1_mean: f64,
    /// Sample standard deviation of weighted F1 over seeds (points).
    pub f1_std: f64,
    /// Mean macro F1 (%).
    pub f1_macro_mean: f64,
    /// Mean MAE of the expected score (score units).
    pub mae_mean: f64,
    /// Mean Pearson correlation of the expected score.
    pub corr_mean: f64,
    /// Mean binary accuracy, negative vs non-negative (%).
    pub acc2_mean: f64,
    /// Mean binary weighted F1, negative vs non-negative (%).
    pub f1_binary_mean: f64,
    /// Parameter count of the row's network.
    pub params: usize,
    /// Seeds of the finished runs, ascending.
    pub seeds: Vec<u64>,
    /// The dataset (`name [source]`) the first seed was evaluated on.
    pub dataset: String,
    /// SHA-256 of the data the row's runs trained on (`data::identity`).
    #[serde(default)]
    pub dataset_fingerprint: Option<String>,
    /// Whether that data is mmkd's synthetic data (`None`: unknown, the data is not here).
    #[serde(default)]
    pub synthetic: Option<bool>,
    /// The paper's CMU-MOSEI figures for this row (not results of this run).
    pub paper_mosei_acc7: Option<f64>,
    /// The paper's CMU-MOSEI F1 (%) for this row.
    pub paper_mosei_f1: Option<f64>,
    /// Per-seed Acc-7 and F1 (percent), in `seeds` order.
    pub acc7_per_seed: Vec<f64>,
    /// Per-seed weighted F1 (percent), in `seeds` order.
    pub f1_per_seed: Vec<f64>,
    /// Distilled rows: mean of the per-seed differences in Acc-7 (points) to the student without
    /// KD, paired over the seeds both have.
    pub acc7_diff_mean: Option<f64>,
    /// Its 95 % t-interval (two-sided, n - 1 degrees of freedom); `None` with fewer than 2 seeds.
    /// With runs from several teachers (`run_teachers`), a t-interval over the teachers of each
    /// teacher's mean paired difference (K - 1 degrees of freedom): the teacher is a random
    /// factor, and the interval holds its variation.
    pub acc7_diff_ci95: Option<[f64; 2]>,
    /// The two-sided p-value of the same t-test (for Holm's adjustment across rows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acc7_diff_p: Option<f64>,
    /// Distilled rows with several teachers: the teacher seed of each run, in `seeds` order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub run_teachers: Vec<u64>,
    /// Distilled rows with several teachers: per teacher (ascending seed), the mean over student
    /// seeds of the paired Acc-7 difference to the student without KD.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub acc7_diff_per_teacher: Vec<f64>,
    /// Distilled rows on data with events (`DIR/events.json`): the student transformers it
    /// distils, by name.
    #[serde(default)]
    pub event_transformers: Vec<String>,
    /// Their mean share of attention mass on the true event frames (over seeds, layers and
    /// those transformers; 200 test clips).
    #[serde(default)]
    pub event_share_mean: Option<f64>,
    /// The same share in the student without KD, over the same transformers where it has them.
    #[serde(default)]
    pub nokd_event_share_mean: Option<f64>,
    /// The share uniform attention would give there.
    #[serde(default)]
    pub uniform_event_share: Option<f64>,
    /// The transformers the comparison with the no-KD student covers: those of
    /// `event_transformers` that the no-KD student has as well.
    #[serde(default)]
    pub event_share_compared: Vec<String>,
    /// Mean of the per-seed differences of the event share to the student without KD, over
    /// `event_share_compared` (paired over the seeds both have).
    #[serde(default)]
    pub event_share_diff_mean: Option<f64>,
    /// Its 95 % t-interval; `None` with fewer than 2 paired seeds. Over teachers, as
    /// `acc7_diff_ci95`, with several teachers.
    #[serde(default)]
    pub event_share_diff_ci95: Option<[f64; 2]>,
    /// The two-sided p-value of the same t-test.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_share_diff_p: Option<f64>,
    /// Per teacher, the mean paired event-share difference (several teachers only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub event_share_diff_per_teacher: Vec<f64>,
    /// The teacher's own share in the teacher transformers this row distils (mean over its
    /// runs), for comparison: what there was to pass on.
    #[serde(default)]
    pub teacher_event_share_mean: Option<f64>,
}

/// Whether a row is a teacher or a student (`"teacher"` / `"student"` in the files).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RowRole {
    /// A teacher network.
    Teacher,
    /// A video-only student.
    Student,
}

impl RowRole {
    /// The name in table.csv.
    pub fn name(self) -> &'static str {
        match self {
            RowRole::Teacher => "teacher",
            RowRole::Student => "student",
        }
    }
}

/// `Option<T>` written as T, or as the text `"none"` for `None` (table.json's layout).
mod none_as_text {
    use serde::de::{DeserializeOwned, Error};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer, T: Serialize>(value: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            None => s.serialize_str("none"),
            Some(v) => v.serialize(s),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>, T: DeserializeOwned>(d: D) -> Result<Option<T>, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        if v == "none" { Ok(None) } else { serde_json::from_value(v).map(Some).map_err(D::Error::custom) }
    }
}

impl TableRow {
    /// The row of the complete teacher.
    pub fn is_complete_teacher(&self) -> bool {
        self.role == RowRole::Teacher && self.teacher == TeacherKind::Complete
    }

    /// A student trained without distillation (of any configuration).
    pub fn is_student_without_kd(&self) -> bool {
        self.role == RowRole::Student && self.level.is_none()
    }

    /// Configuration 5's student without KD: the paper's baseline.
    pub fn is_paper_baseline(&self) -> bool {
        self.is_student_without_kd() && self.config == Some(StudentConfig::C5)
    }

    /// A distilled student (a control included).
    pub fn is_distilled(&self) -> bool {
        self.role == RowRole::Student && self.level.is_some()
    }

    /// The row of the plan this row reports.
    pub fn spec(&self) -> RowSpec {
        match (self.role, self.config, self.level, self.method) {
            (RowRole::Teacher, ..) => RowSpec::Teacher(self.teacher),
            (RowRole::Student, Some(config), Some(level), Some(method)) if self.control => RowSpec::Control { config, level, method },
            (RowRole::Student, Some(config), Some(level), Some(method)) => RowSpec::Distilled { config, level, method },
            (RowRole::Student, ..) => RowSpec::StudentNoKd(self.config.unwrap_or(StudentConfig::C5)),
        }
    }

    /// The number of units its difference intervals are over: teachers with several teachers,
    /// else paired seeds.
    pub fn interval_units(&self) -> &'static str {
        if self.run_teachers.is_empty() { "seeds" } else { "teachers" }
    }
}

/// Test clips the event shares of the study table average over.
const EVENT_SHARE_CLIPS: usize = 200;

/// The datasets of a study's runs with their events (`None`: real data, no events), loaded once.
type StudyData = BTreeMap<std::path::PathBuf, Option<(crate::data::Dataset, crate::data::events::Events)>>;

/// The attention-map statistics of a run's best checkpoint on its own data
/// (`EVENT_SHARE_CLIPS` test clips), computed once per run; `None` when the data has no events.
fn run_map_stats<'a>(
    dir: &Path,
    cfg: &RunConfig,
    data: &mut StudyData,
    cache: &'a mut BTreeMap<std::path::PathBuf, Option<Vec<crate::eval::maps::MapStats>>>,
) -> Result<Option<&'a [crate::eval::maps::MapStats]>> {
    if !cache.contains_key(dir) {
        if !data.contains_key(&cfg.data) {
            let loaded = match crate::data::events::Events::load(&cfg.data)? {
                Some(events) => Some((crate::data::load_any(&cfg.data)?, events)),
                None => None,
            };
            data.insert(cfg.data.clone(), loaded);
        }
        let stats = match data.get(&cfg.data).and_then(|d| d.as_ref()) {
            Some((dataset, events)) => {
                let device = burn::prelude::Device::flex();
                let net = crate::run::Run::open(dir)?.load_best(&device)?;
                let frames = crate::eval::maps::EventFrames { starts: &events.test, width: events.burst_frames };
                Some(crate::eval::maps::attention_maps(&net, &dataset.test, &dataset.shape, EVENT_SHARE_CLIPS, 1.0, Some(frames), &device).0)
            }
            None => None,
        };
        cache.insert(dir.to_path_buf(), stats);
    }
    Ok(cache[dir].as_deref())
}

/// Mean (over layers and `ids`) event share and uniform share in `stats`; `None` when the
/// network has none of `ids`.
fn event_share(stats: &[crate::eval::maps::MapStats], ids: &[crate::model::TransformerId]) -> Option<(f64, f64)> {
    let names: Vec<String> = ids.iter().map(|id| id.to_string()).collect();
    let chosen: Vec<_> = stats.iter().filter(|s| names.contains(&s.transformer)).collect();
    if chosen.is_empty() {
        return None;
    }
    let n = chosen.len() as f64;
    let share = chosen.iter().filter_map(|s| s.stats.event_share).sum::<f64>() / n;
    let uniform = chosen.iter().filter_map(|s| s.stats.uniform_event_share).sum::<f64>() / n;
    Some((share, uniform))
}

/// The 0.975 quantile (for a two-sided 95 % interval) of Student's t with `df` degrees of freedom: tabulated up to 30,
/// beyond that the Cornish-Fisher expansion around the normal quantile (error below 1e-4).
pub fn t_quantile_975(df: usize) -> f64 {
    const TABLE: [f64; 30] = [
        12.706205, 4.302653, 3.182446, 2.776445, 2.570582, 2.446912, 2.364624, 2.306004, 2.262157, 2.228139, 2.200985, 2.178813, 2.160369, 2.144787, 2.131450, 2.119905, 2.109816, 2.100922, 2.093024,
        2.085963, 2.079614, 2.073873, 2.068658, 2.063899, 2.059539, 2.055529, 2.051831, 2.048407, 2.045230, 2.042272,
    ];
    match df {
        0 => f64::NAN,
        1..=30 => TABLE[df - 1],
        _ => {
            let (z, n) = (1.959_963_984_540_054f64, df as f64);
            z + (z.powi(3) + z) / (4.0 * n) + (5.0 * z.powi(5) + 16.0 * z.powi(3) + 3.0 * z) / (96.0 * n * n)
        }
    }
}

/// Two-sided p-value of Student's t statistic `t` with `df` degrees of freedom:
/// `I_{df/(df+t^2)}(df/2, 1/2)`, the regularised incomplete beta function.
pub fn t_two_sided_p(t: f64, df: usize) -> f64 {
    if df == 0 || !t.is_finite() {
        return if t.is_infinite() { 0.0 } else { f64::NAN };
    }
    let n = df as f64;
    incomplete_beta(n / 2.0, 0.5, n / (n + t * t))
}

/// The regularised incomplete beta function `I_x(a, b)` by Lentz's continued fraction (the
/// symmetry `I_x(a, b) = 1 - I_{1-x}(b, a)` keeps it in its fast-converging range).
fn incomplete_beta(a: f64, b: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    if x > (a + 1.0) / (a + b + 2.0) {
        return 1.0 - incomplete_beta(b, a, 1.0 - x);
    }
    let ln_front = a * x.ln() + b * (1.0 - x).ln() - ln_beta(a, b);
    let tiny = 1e-300;
    let (mut c, mut d) = (1.0, 1.0 - (a + b) * x / (a + 1.0));
    d = 1.0 / if d.abs() < tiny { tiny } else { d };
    let mut f = d;
    for m in 1..300 {
        let m = m as f64;
        for numerator in [m * (b - m) * x / ((a + 2.0 * m - 1.0) * (a + 2.0 * m)), -(a + m) * (a + b + m) * x / ((a + 2.0 * m) * (a + 2.0 * m + 1.0))] {
            d = 1.0 + numerator * d;
            d = 1.0 / if d.abs() < tiny { tiny } else { d };
            c = 1.0 + numerator / c;
            c = if c.abs() < tiny { tiny } else { c };
            f *= c * d;
        }
        if (c * d - 1.0).abs() < 1e-15 {
            break;
        }
    }
    ln_front.exp() * f / a
}

/// `ln B(a, b)` through Lanczos' log-gamma (g = 7, 9 terms; relative error below 1e-13).
fn ln_beta(a: f64, b: f64) -> f64 {
    ln_gamma(a) + ln_gamma(b) - ln_gamma(a + b)
}

fn ln_gamma(x: f64) -> f64 {
    const G: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        return (std::f64::consts::PI / (std::f64::consts::PI * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let t = x + 7.5;
    let sum = G[1..].iter().enumerate().fold(G[0], |acc, (i, g)| acc + g / (x + i as f64 + 1.0));
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + sum.ln()
}

/// The two-sided p-value of a mean difference whose 95 % t-interval is `ci` over `n` units
/// (`n - 1` degrees of freedom): the interval's half-width gives the standard error.
pub fn p_from_interval(mean: f64, ci: [f64; 2], n: usize) -> f64 {
    let se = (ci[1] - ci[0]) / 2.0 / t_quantile_975(n - 1);
    if se <= 0.0 {
        return if mean == 0.0 { 1.0 } else { 0.0 };
    }
    t_two_sided_p(mean / se, n - 1)
}

/// Holm's step-down procedure at level `alpha`: which of the hypotheses with p-values `p` are
/// rejected while the family-wise error rate stays at most `alpha`.
pub fn holm_rejects(p: &[f64], alpha: f64) -> Vec<bool> {
    let mut order: Vec<usize> = (0..p.len()).collect();
    order.sort_by(|&a, &b| p[a].partial_cmp(&p[b]).unwrap_or(std::cmp::Ordering::Equal));
    let mut rejected = vec![false; p.len()];
    for (rank, &i) in order.iter().enumerate() {
        if p[i] <= alpha / (p.len() - rank) as f64 {
            rejected[i] = true;
        } else {
            break;
        }
    }
    rejected
}

/// Mean of paired differences and its 95 % t-interval; the interval needs two or more pairs.
pub fn paired_t_interval(diffs: &[f64]) -> (f64, Option<[f64; 2]>) {
    let (m, sd) = mean_std(diffs);
    if diffs.len() < 2 {
        return (m, None);
    }
    let half = t_quantile_975(diffs.len() - 1) * sd / (diffs.len() as f64).sqrt();
    (m, Some([m - half, m + half]))
}

/// Median inference time of the complete teacher and the config-5 student (`latency.json`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Latency {
    /// Where it was measured.
    pub device: String,
    /// Clips per forward pass.
    pub batch: usize,
    /// Complete teacher, milliseconds per forward pass.
    pub teacher_ms: f64,
    /// Config-5 student, milliseconds per forward pass.
    pub student_ms: f64,
}

/// Mean and sample standard deviation (n - 1; 0 for a single value).
pub fn mean_std(v: &[f64]) -> (f64, f64) {
    if v.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    if v.len() < 2 {
        return (m, 0.0);
    }
    let var = v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (n - 1.0);
    (m, var.sqrt())
}

/// Whether the data at `path` is mmkd's synthetic data: its manifest says so; a pickle never
/// is; `None` when the data is not there to ask.
fn is_synthetic(path: &Path) -> Option<bool> {
    if path.is_dir() { crate::data::native::read_manifest(path).ok().map(|m| m.synthetic) } else { path.exists().then_some(false) }
}

/// The line that names a table's data: its name and source, its fingerprint, and whether it is
/// synthetic. Real data is named as the user's file, never called synthetic or CMU-MOSEI.
pub fn dataset_line(rows: &[TableRow]) -> String {
    let Some(first) = rows.first() else { return "Dataset: none.".into() };
    let fingerprint = first.dataset_fingerprint.as_deref().map_or(String::new(), |f| format!(", fingerprint `{}`", crate::data::identity::short(f)));
    let what = match first.synthetic {
        Some(true) => "synthetic data generated by mmkd, not CMU-MOSEI; every number below was measured on it.",
        Some(false) => "the user's data, read from the file named; every number below was measured on it. mmkd does not check that it is CMU-MOSEI.",
        None => "every number below was measured on this dataset.",
    };
    format!("Dataset: **{}**{fingerprint}: {what}", first.dataset)
}

/// Refuse (as bad input, naming the run) a finished run below `study/runs` that does not belong
/// to the study's plan (`study.json`): one the plan does not name, or trained on another
/// dataset (fingerprint) or with another preset. Without a plan (a study from before
/// `study.json`), the runs must at least agree with each other on both.
pub fn check_runs_against_plan(study: &Path) -> Result<()> {
    let opts = super::plan::StudyOptions::load(study)?;
    let planned: Option<std::collections::BTreeSet<std::ffi::OsString>> = opts.as_ref().map(|o| {
        let o = super::plan::StudyOptions { out: study.to_path_buf(), ..o.clone() };
        super::plan::plan(&o).into_iter().filter(|r| r.row.is_some()).filter_map(|r| r.dir.file_name().map(|n| n.to_os_string())).collect()
    });
    let data_fingerprint = match &opts {
        Some(o) if o.data_dir().join("manifest.json").exists() => Some(crate::data::identity::fingerprint(&o.data_dir())?),
        _ => None,
    };
    let runs = study.join("runs");
    if !runs.exists() {
        return Ok(());
    }
    let mut entries: Vec<_> = std::fs::read_dir(&runs).with_context(|| format!("reading {}", runs.display()))?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.path());
    let mut first: Option<(std::path::PathBuf, RunConfig)> = None;
    for entry in entries {
        let dir = entry.path();
        if !dir.join("config.json").exists() || !dir.join("eval.json").exists() {
            continue;
        }
        let cfg = RunConfig::load(&dir)?;
        if let Some(names) = &planned
            && !names.contains(&entry.file_name())
        {
            crate::bail_input!("{}: not a run of this study's plan ({}); move it out of {} or collect another folder", dir.display(), study.join(super::plan::STUDY_FILE).display(), runs.display());
        }
        if let Some(o) = &opts
            && cfg.preset != o.preset
        {
            crate::bail_input!("{}: trained with preset {}, but the study's plan has preset {}", dir.display(), cfg.preset.name(), o.preset.name());
        }
        if let (Some(want), Some(got)) = (&data_fingerprint, &cfg.dataset_fingerprint)
            && want != got
        {
            crate::bail_input!(
                "{}: trained on dataset {} ({}), but the study's data {} is {}",
                dir.display(),
                cfg.dataset,
                crate::data::identity::short(got),
                opts.as_ref().map_or(String::new(), |o| o.data_dir().display().to_string()),
                crate::data::identity::short(want)
            );
        }
        match &first {
            None => first = Some((dir.clone(), cfg)),
            Some((dir0, cfg0)) => {
                if cfg.preset != cfg0.preset {
                    crate::bail_input!("{}: trained with preset {}, but {} with preset {}", dir.display(), cfg.preset.name(), dir0.display(), cfg0.preset.name());
                }
                if let (Some(a), Some(b)) = (&cfg.dataset_fingerprint, &cfg0.dataset_fingerprint)
                    && a != b
                {
                    crate::bail_input!(
                        "{}: trained on dataset {} ({}), but {} on {} ({})",
                        dir.display(),
                        cfg.dataset,
                        crate::data::identity::short(a),
                        dir0.display(),
                        cfg0.dataset,
                        crate::data::identity::short(b)
                    );
                }
            }
        }
    }
    Ok(())
}

/// The row a finished run belongs to, from its config.
fn row_of(cfg: &RunConfig) -> Option<RowSpec> {
    match &cfg.role {
        RunRole::Teacher { teacher } => Some(RowSpec::Teacher(*teacher)),
        RunRole::Student { distill: None, config, .. } => Some(RowSpec::StudentNoKd(*config)),
        RunRole::Student { distill: Some(d), config, .. } if d.teacher_signal == crate::distill::TeacherSignal::Shuffled => {
            Some(RowSpec::Control { config: *config, level: d.level, method: d.method })
        }
        RunRole::Student { distill: Some(d), config, .. } => Some(RowSpec::Distilled { config: *config, level: d.level, method: d.method }),
    }
}

/// The EDAM direction a run distilled in; `None` for a run without EDAM.
fn edam_orientation(cfg: &RunConfig) -> Option<crate::distill::Orientation> {
    match &cfg.role {
        RunRole::Student { distill: Some(d), .. } if matches!(d.method, Method::EdamS | Method::EdamT) => Some(d.orientation),
        _ => None,
    }
}

struct Finished {
    dir: std::path::PathBuf,
    seed: u64,
    /// A distilled run's teacher's seed (from the teacher run's config, when it is there).
    teacher_seed: Option<u64>,
    eval: EvalReport,
    cfg: RunConfig,
}

/// The seed of the teacher a distilled run learned from, read from the teacher's config.
fn teacher_seed_of(cfg: &RunConfig) -> Option<u64> {
    match &cfg.role {
        RunRole::Student { distill: Some(d), .. } => RunConfig::load(&d.teacher_run).ok().map(|t| t.train.seed),
        _ => None,
    }
}

/// Mean, 95 % t-interval and two-sided p-value (H0: mean 0) of paired differences, each tagged
/// with its teacher's seed. When teachers teach several students each (`study --teachers`),
/// the units are the teachers: each teacher's mean difference over its student seeds, so the
/// interval holds the teacher-to-teacher variation. With one teacher, or one teacher per seed
/// (each pair already its own teacher's), the units are the pairs. Returns the per-teacher
/// means too (empty unless teachers are the units).
pub fn paired_summary(diffs: &[(Option<u64>, f64)]) -> (f64, Option<[f64; 2]>, Option<f64>, Vec<f64>) {
    let mut by_teacher: BTreeMap<Option<u64>, Vec<f64>> = BTreeMap::new();
    for (t, d) in diffs {
        by_teacher.entry(*t).or_default().push(*d);
    }
    let nested = by_teacher.len() > 1 && by_teacher.values().any(|v| v.len() > 1);
    let per_teacher: Vec<f64> = if nested { by_teacher.values().map(|v| mean_std(v).0).collect() } else { Vec::new() };
    let units: &[f64] = if per_teacher.is_empty() { &diffs.iter().map(|d| d.1).collect::<Vec<_>>() } else { &per_teacher };
    let (m, ci) = paired_t_interval(units);
    let (_, sd) = mean_std(units);
    let p = (units.len() >= 2).then(|| {
        if sd > 0.0 {
            t_two_sided_p(m / (sd / (units.len() as f64).sqrt()), units.len() - 1)
        } else if m == 0.0 {
            1.0
        } else {
            0.0
        }
    });
    (m, ci, p, per_teacher)
}

/// Read every finished run (a directory with config.json and eval.json) below `runs`.
fn finished_runs(runs: &Path) -> Result<BTreeMap<RowSpec, Vec<Finished>>> {
    let mut by_row: BTreeMap<RowSpec, Vec<Finished>> = BTreeMap::new();
    if !runs.exists() {
        return Ok(by_row);
    }
    let mut entries: Vec<_> = std::fs::read_dir(runs).with_context(|| format!("reading {}", runs.display()))?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.path());
    for entry in entries {
        let dir = entry.path();
        let (cfg_path, eval_path) = (dir.join("config.json"), dir.join("eval.json"));
        if !cfg_path.exists() || !eval_path.exists() {
            continue;
        }
        let cfg = RunConfig::load(&dir)?;
        let eval: EvalReport = serde_json::from_str(&std::fs::read_to_string(&eval_path)?).with_context(|| format!("reading {}", eval_path.display()))?;
        let Some(row) = row_of(&cfg) else { continue };
        let teacher_seed = teacher_seed_of(&cfg);
        // One row, one EDAM direction: runs distilled in both cannot be averaged together.
        if let (Some(o), Some(Finished { dir: dir0, cfg: cfg0, .. })) = (edam_orientation(&cfg), by_row.get(&row).and_then(|v| v.first()))
            && let Some(o0) = edam_orientation(cfg0)
            && o != o0
        {
            crate::bail_input!("{}: EDAM orientation {}, but {} of the same row ran {}; collect them in separate studies", dir.display(), o.as_str(), dir0.display(), o0.as_str());
        }
        by_row.entry(row).or_default().push(Finished { dir: dir.clone(), seed: cfg.train.seed, teacher_seed, eval, cfg });
    }
    for v in by_row.values_mut() {
        v.sort_by_key(|f| (f.teacher_seed, f.seed));
    }
    Ok(by_row)
}

/// A row's role, configuration, teacher, level and method, as the table holds them.
fn describe(row: &RowSpec) -> (RowRole, Option<StudentConfig>, TeacherKind, Option<Level>, Option<Method>) {
    match *row {
        RowSpec::Teacher(k) => (RowRole::Teacher, None, k, None, None),
        RowSpec::StudentNoKd(config) => (RowRole::Student, Some(config), TeacherKind::Complete, None, None),
        RowSpec::Distilled { config, level, method } | RowSpec::Control { config, level, method } => {
            (RowRole::Student, Some(config), crate::distill::teacher_for_config(config), Some(level), Some(method))
        }
    }
}

/// The rows a study's table can have, in order: Table 1's, then the controls.
fn table_rows() -> Vec<RowSpec> {
    table1_rows().into_iter().chain(super::plan::control_rows()).collect()
}

/// Build the table rows (in Table 1's order) from the run directories below `study/runs`.
pub fn collect(study: &Path) -> Result<Vec<TableRow>> {
    let by_row = finished_runs(&study.join("runs"))?;
    let mut rows = Vec::new();
    for spec in table_rows() {
        let Some(runs) = by_row.get(&spec) else { continue };
        // Teachers that each taught several of the row's runs (`study --teachers`); one teacher
        // per seed is not that: each run is then its own teacher's.
        let teachers = runs.iter().filter_map(|r| r.teacher_seed).collect::<std::collections::BTreeSet<_>>().len();
        let several_teachers = teachers > 1 && runs.len() > teachers;
        let acc: Vec<f64> = runs.iter().map(|r| 100.0 * r.eval.acc7).collect();
        let f1: Vec<f64> = runs.iter().map(|r| 100.0 * r.eval.f1_weighted).collect();
        let mean = |f: &dyn Fn(&EvalReport) -> f64| mean_std(&runs.iter().map(|r| f(&r.eval)).collect::<Vec<_>>()).0;
        let (acc7_mean, acc7_std) = mean_std(&acc);
        let (f1_mean, f1_std) = mean_std(&f1);
        let (role, config, teacher, level, method) = describe(&spec);
        let (pa, pf) = paper_figures(&spec).unzip();
        rows.push(TableRow {
            role,
            config,
            teacher,
            level,
            method,
            control: matches!(spec, RowSpec::Control { .. }),
            edam_orientation: edam_orientation(&runs[0].cfg).filter(|o| *o != crate::distill::Orientation::Literal),
            nokd_config: None,
            acc7_mean,
            acc7_std,
            f1_mean,
            f1_std,
            f1_macro_mean: 100.0 * mean(&|e| e.f1_macro),
            mae_mean: mean(&|e| e.mae),
            corr_mean: mean(&|e| e.corr),
            acc2_mean: 100.0 * mean(&|e| e.acc2),
            f1_binary_mean: 100.0 * mean(&|e| e.f1_binary),
            // Every seed of a row has the same architecture: count it once.
            params: burn::module::Module::num_params(&runs[0].cfg.build_net(&burn::prelude::Device::flex())),
            seeds: runs.iter().map(|r| r.seed).collect(),
            dataset: runs[0].eval.dataset.clone(),
            dataset_fingerprint: runs[0].cfg.dataset_fingerprint.clone(),
            synthetic: is_synthetic(&runs[0].cfg.data),
            paper_mosei_acc7: pa,
            paper_mosei_f1: pf,
            acc7_per_seed: acc,
            f1_per_seed: f1,
            acc7_diff_mean: None,
            acc7_diff_ci95: None,
            acc7_diff_p: None,
            run_teachers: if several_teachers { runs.iter().map(|r| r.teacher_seed.unwrap_or(0)).collect() } else { Vec::new() },
            acc7_diff_per_teacher: Vec::new(),
            event_transformers: Vec::new(),
            event_share_mean: None,
            nokd_event_share_mean: None,
            uniform_event_share: None,
            event_share_compared: Vec::new(),
            event_share_diff_mean: None,
            event_share_diff_ci95: None,
            event_share_diff_p: None,
            event_share_diff_per_teacher: Vec::new(),
            teacher_event_share_mean: None,
        });
    }
    // Where the data says where the events are: the distilled transformers' event share, in
    // the distilled student and in the student without KD.
    let mut data = StudyData::new();
    let mut cache = BTreeMap::new();
    // The baseline of a row: the student without KD of its configuration where the study has
    // one (configuration 1's control), else configuration 5's, the paper's.
    let baseline_of = |config: StudentConfig| if by_row.contains_key(&RowSpec::StudentNoKd(config)) { config } else { StudentConfig::C5 };
    for (spec, row) in table_rows().into_iter().filter(|s| by_row.contains_key(s)).zip(rows.iter_mut()) {
        let (RowSpec::Distilled { config, .. } | RowSpec::Control { config, .. }) = spec else { continue };
        let pairs = crate::distill::distilled_pairs(config);
        let student_ids: Vec<_> = pairs.iter().map(|(_, s)| *s).collect();
        let teacher_ids: Vec<_> = pairs.iter().map(|(t, _)| *t).collect();
        // (seed, share, uniform share, teacher seed) of every run that has the transformers.
        let mut per_seed = |runs: &[Finished], ids: &[crate::model::TransformerId]| -> Result<Vec<(u64, f64, f64, Option<u64>)>> {
            let mut found = Vec::new();
            for r in runs {
                if let Some((share, uniform)) = run_map_stats(&r.dir, &r.cfg, &mut data, &mut cache)?.and_then(|stats| event_share(stats, ids)) {
                    found.push((r.seed, share, uniform, r.teacher_seed));
                }
            }
            Ok(found)
        };
        let mean = |v: &[(u64, f64, f64, Option<u64>)], f: fn(&(u64, f64, f64, Option<u64>)) -> f64| (!v.is_empty()).then(|| v.iter().map(f).sum::<f64>() / v.len() as f64);
        let distilled = per_seed(&by_row[&spec], &student_ids)?;
        if distilled.is_empty() {
            continue;
        }
        row.event_transformers = student_ids.iter().map(|id| id.to_string()).collect();
        row.event_share_mean = mean(&distilled, |v| v.1);
        row.uniform_event_share = mean(&distilled, |v| v.2);
        let base_config = baseline_of(config);
        if let Some(runs) = by_row.get(&RowSpec::StudentNoKd(base_config)) {
            // Compare like with like: the transformers the no-KD student has too. Against
            // configuration 5's that is all of a configuration-5 row's and two of configuration
            // 1's nine; against configuration 1's own, all nine.
            let nokd_has = base_config.body().transformers();
            let shared: Vec<_> = student_ids.iter().copied().filter(|id| nokd_has.contains(id)).collect();
            let base = per_seed(runs, &shared)?;
            row.nokd_event_share_mean = mean(&base, |v| v.1);
            let mine = per_seed(&by_row[&spec], &shared)?;
            row.event_share_compared = shared.iter().map(|id| id.to_string()).collect();
            let diffs: Vec<(Option<u64>, f64)> = mine.iter().filter_map(|(seed, share, _, teacher)| base.iter().find(|b| b.0 == *seed).map(|b| (*teacher, share - b.1))).collect();
            if !diffs.is_empty() {
                let (m, ci, p, per_teacher) = paired_summary(&diffs);
                row.event_share_diff_mean = Some(m);
                row.event_share_diff_ci95 = ci;
                row.event_share_diff_p = p;
                row.event_share_diff_per_teacher = per_teacher;
            }
        }
        if let Some(teachers) = by_row.get(&RowSpec::Teacher(crate::distill::teacher_for_config(config))) {
            row.teacher_event_share_mean = mean(&per_seed(teachers, &teacher_ids)?, |v| v.1);
        }
    }
    // Distilled rows against the student without KD of their configuration (else
    // configuration 5's), paired by seed (and with several teachers summarised per teacher).
    let baselines: Vec<TableRow> = rows.iter().filter(|r| r.is_student_without_kd()).cloned().collect();
    for r in rows.iter_mut().filter(|r| r.is_distilled()) {
        let own = baselines.iter().find(|b| b.config == r.config);
        let Some(base) = own.or_else(|| baselines.iter().find(|b| b.is_paper_baseline())) else { continue };
        r.nokd_config = own.and(r.config).filter(|c| *c != StudentConfig::C5);
        {
            let diffs: Vec<(Option<u64>, f64)> = r
                .seeds
                .iter()
                .zip(&r.acc7_per_seed)
                .enumerate()
                .filter_map(|(i, (seed, acc))| base.seeds.iter().position(|s| s == seed).map(|j| (r.run_teachers.get(i).copied(), acc - base.acc7_per_seed[j])))
                .collect();
            if !diffs.is_empty() {
                let (m, ci, p, per_teacher) = paired_summary(&diffs);
                r.acc7_diff_mean = Some(m);
                r.acc7_diff_ci95 = ci;
                r.acc7_diff_p = p;
                r.acc7_diff_per_teacher = per_teacher;
            }
        }
    }
    Ok(rows)
}

/// The row's name as in the paper's Table 1 ("Student c5: EDAM-S on attention-map").
pub fn row_label(r: &TableRow) -> String {
    match r.spec() {
        RowSpec::Teacher(t) => format!("Teacher: {} {}", t.name(), if t == TeacherKind::Complete { "network" } else { "branch" }),
        RowSpec::StudentNoKd(StudentConfig::C5) => "Student without KD".to_string(),
        RowSpec::StudentNoKd(config) => format!("Student c{} without KD", config.number()),
        RowSpec::Distilled { config, level, method } => format!("Student c{}: {}{} on {}", config.number(), method.name().to_uppercase(), orientation_tag(r), level.name()),
        RowSpec::Control { config, level, method } => format!("Control c{}: {}{} on {}, another clip's teacher", config.number(), method.name().to_uppercase(), orientation_tag(r), level.name()),
    }
}

/// " (conventional)" for an EDAM row distilled in the conventional direction (METHOD.md: say
/// which one ran); nothing for eq. 13 as printed.
fn orientation_tag(r: &TableRow) -> String {
    r.edam_orientation.map_or(String::new(), |o| format!(" ({})", o.as_str()))
}

/// What REPORT.md says beyond the table, gathered from the study's files (`study::gather_report`).
#[derive(Clone, Debug, Default)]
pub struct ReportFacts {
    /// The Acc-7 bar chart, relative to the study folder.
    pub acc7_picture: String,
    /// The complete teacher's branch dropout, when it was trained with one.
    pub teacher_branch_dropout: Option<f64>,
    /// Per complete teacher trained with early stopping: (seed, patience, epochs trained, best epoch).
    pub teacher_early_stops: Vec<(u64, usize, usize, usize)>,
    /// The maps of the best attention-level student.
    pub best_maps: Option<BestMaps>,
}

/// The pictures of the best attention-level student's maps.
#[derive(Clone, Debug)]
pub struct BestMaps {
    /// Its row's label.
    pub label: String,
    /// The seed of the run drawn.
    pub seed: u64,
    /// Per distilled student transformer (its name), its picture relative to the study folder.
    pub pictures: Vec<(String, String)>,
}

/// The attention-map row (not a control) with the largest mean Acc-7 gain over the student
/// without KD.
pub fn best_attention_row(rows: &[TableRow]) -> Option<&TableRow> {
    rows.iter()
        .filter(|r| r.level == Some(Level::AttentionMap) && !r.control && r.acc7_diff_mean.is_some())
        .max_by(|a, b| a.acc7_diff_mean.partial_cmp(&b.acc7_diff_mean).unwrap_or(std::cmp::Ordering::Equal))
}

/// " over K teachers" for a row whose intervals are over teachers; nothing otherwise.
fn over_teachers(r: &TableRow) -> String {
    if r.run_teachers.is_empty() { String::new() } else { format!(" over {} teachers", r.acc7_diff_per_teacher.len().max(r.event_share_diff_per_teacher.len())) }
}

/// Holm's adjustment across the rows (family-wise 5 %), for Acc-7 and for the event share,
/// where at least two rows have a p-value: which rows stay firm.
fn holm_paragraph(rows: &[&TableRow]) -> String {
    let mut s = String::new();
    for (what, p_of) in [("Acc-7", (|r: &TableRow| r.acc7_diff_p) as fn(&TableRow) -> Option<f64>), ("event share", |r: &TableRow| r.event_share_diff_p)] {
        let tested: Vec<(&TableRow, f64)> = rows.iter().filter_map(|r| p_of(r).map(|p| (*r, p))).collect();
        if tested.len() < 2 {
            continue;
        }
        let ps: Vec<f64> = tested.iter().map(|t| t.1).collect();
        let rejects = holm_rejects(&ps, 0.05);
        let verdicts: Vec<String> = tested.iter().zip(&rejects).map(|((r, p), firm)| format!("{} p = {p:.4} ({})", row_label(r), if *firm { "firm" } else { "not firm" })).collect();
        s += &format!("\nHolm-adjusted across these {} rows (family-wise error 5 %), {what} against no KD: {}.\n", tested.len(), verdicts.join("; "));
    }
    s
}

/// REPORT.md: the dataset, the design's caveats, the Acc-7 chart, what each attention-level
/// method did to Acc-7 and to the event share, the best attention-level student's maps,
/// teacher against student in parameters and latency, then the table. Reads no file.
pub fn render_report(rows: &[TableRow], table: &str, latency: Option<&super::Latency>, facts: &ReportFacts) -> String {
    let label = |r: &TableRow| row_label(r);
    let mut s = format!("# Study report\n\n{}\n\n", dataset_line(rows));
    let student_seeds = rows.iter().filter(|r| r.role == RowRole::Student).map(|r| r.seeds.len()).max().unwrap_or(0);
    let complete_teacher = rows.iter().find(|r| r.is_complete_teacher());
    if let Some(t) = complete_teacher
        && t.seeds.len() == 1
        && student_seeds > 1
    {
        s += &format!("One complete teacher (seed {}) taught the students of every seed, so the intervals below hold the students' seed-to-seed variation, not the teacher's.\n\n", t.seeds[0]);
    }
    if let Some(t) = complete_teacher
        && t.seeds.len() > 1
        && rows.iter().any(|r| !r.run_teachers.is_empty())
    {
        s += &format!(
            "{} complete teachers (seeds {}) each taught students of every seed; the intervals and p-values of the distilled rows are over the teachers: a t-interval of each teacher's mean paired difference ({} degrees of freedom), so they hold the teacher-to-teacher variation.\n\n",
            t.seeds.len(),
            t.seeds.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(", "),
            t.seeds.len() - 1
        );
    }
    if let Some(p) = facts.teacher_branch_dropout {
        s += &format!("The complete teacher was trained with branch dropout p = {p} (each branch's last step dropped whole; not in MulT; docs/DECISIONS.md).\n\n");
    }
    if !facts.teacher_early_stops.is_empty() {
        let each: Vec<String> = facts.teacher_early_stops.iter().map(|(seed, _, epochs, best)| format!("seed {seed}: {epochs} epochs, best {best}")).collect();
        s += &format!(
            "The complete teachers were trained with early stopping (patience {} epochs on the validation loss; the best epoch's weights are the teacher): {}.\n\n",
            facts.teacher_early_stops[0].1,
            each.join("; ")
        );
    }
    s += &format!("## Acc-7 per row\n\n![Acc-7 per row with 95 % intervals of the mean]({})\n\n", facts.acc7_picture);
    s += "## Attention-level distillation\n\n";
    let attention: Vec<&TableRow> = rows.iter().filter(|r| r.level == Some(Level::AttentionMap)).collect();
    if attention.is_empty() {
        s += "No attention-level row has finished runs.\n\n";
    }
    for r in &attention {
        let acc = match (r.acc7_diff_mean, r.acc7_diff_ci95) {
            (Some(d), Some([lo, hi])) => format!(
                "Acc-7 {d:+.2} points vs {}, 95 % CI [{lo:+.2}, {hi:+.2}]{} ({})",
                r.nokd_config.map_or("no KD".to_string(), |c| format!("configuration {}'s student without KD", c.number())),
                over_teachers(r),
                if lo > 0.0 {
                    "a firm gain"
                } else if hi < 0.0 {
                    "a firm loss"
                } else {
                    "not firm: the interval contains 0"
                }
            ),
            (Some(d), None) => format!("Acc-7 {d:+.2} points vs no KD (one seed: no interval)"),
            _ => "no paired no-KD runs".to_string(),
        };
        let share = match (r.event_share_mean, r.uniform_event_share) {
            (Some(e), Some(u)) => format!(
                "; event share in {} {e:.3} against {} without KD and {u:.3} under uniform attention{}{}",
                r.event_transformers.join(", "),
                r.nokd_event_share_mean.map_or("(not comparable)".to_string(), |n| format!("{n:.3}")),
                match (r.event_share_diff_mean, r.event_share_diff_ci95) {
                    (Some(d), Some([lo, hi])) => format!(
                        ", a difference of {d:+.3}{}, 95 % CI [{lo:+.3}, {hi:+.3}]{} ({})",
                        if r.event_share_compared.len() < r.event_transformers.len() {
                            format!(" in {} (the transformers the no-KD student has too)", r.event_share_compared.join(", "))
                        } else {
                            String::new()
                        },
                        over_teachers(r),
                        if lo > 0.0 {
                            "a firm rise"
                        } else if hi < 0.0 {
                            "a firm fall"
                        } else {
                            "not firm"
                        }
                    ),
                    _ => String::new(),
                },
                r.teacher_event_share_mean.map_or(String::new(), |t| format!("; the teacher's own share in the transformers distilled: {t:.3} ({:.2}x uniform)", t / u.max(1e-12)))
            ),
            _ => String::new(),
        };
        s += &format!("- **{}**: {acc}{share}.\n", label(r));
    }
    s += &holm_paragraph(&attention);
    if attention.iter().any(|r| r.control) {
        s += "\nA control row keeps its method's loss and takes the teacher's maps of another clip of the batch: what it gains over the student without KD does not come from what the teacher knows of the clip.\n";
    }
    if let Some(b) = &facts.best_maps {
        s += &format!(
            "\n## Maps of the best attention-level student ({}, seed {})\n\nThe first test clip; teacher, distilled student and student without KD share one colour scale; the red outline marks the true event's key steps; under each student map its mean row KL divergence to the teacher's.\n\n",
            b.label, b.seed
        );
        for (id, picture) in &b.pictures {
            s += &format!("![{id}]({picture})\n\n");
        }
    }
    s += "## Teacher and student\n\n";
    let params = |f: &dyn Fn(&TableRow) -> bool| rows.iter().find(|r| f(r)).map(|r| r.params);
    if let (Some(t), Some(st)) = (params(&|r| r.is_complete_teacher()), params(&|r| r.is_paper_baseline())) {
        s += &format!("- Parameters: complete teacher {t}, config-5 student {st} ({:.0} % of the teacher).\n", 100.0 * st as f64 / t as f64);
    }
    if let Some(l) = latency {
        s += &format!(
            "- Inference latency on {} (batch {}, median): teacher {:.2} ms, student {:.2} ms ({:.0} % of the teacher).\n",
            l.device,
            l.batch,
            l.teacher_ms,
            l.student_ms,
            100.0 * l.student_ms / l.teacher_ms
        );
    }
    s += "\n## The table\n\n";
    s += table.split_once("\n\n").map_or(table, |(_, rest)| rest);
    s
}

/// table.csv: one line per row, numbers to 3 decimals (MAE and correlation to 4).
pub fn to_csv(rows: &[TableRow]) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    let header = [
        "role",
        "config",
        "teacher",
        "level",
        "method",
        "acc7_mean",
        "acc7_std",
        "f1_mean",
        "f1_std",
        "f1_macro_mean",
        "mae_mean",
        "corr_mean",
        "acc2_mean",
        "f1_binary_mean",
        "params",
        "n_seeds",
        "seeds",
        "dataset",
        "paper_mosei_acc7",
        "paper_mosei_f1",
        "acc7_diff_mean",
        "acc7_diff_ci95_low",
        "acc7_diff_ci95_high",
    ];
    w.write_record(header).expect("writing to memory");
    for r in rows {
        let f3 = |x: f64| format!("{x:.3}");
        w.write_record([
            r.role.name().to_string(),
            r.config.map(|c| c.to_string()).unwrap_or_default(),
            r.teacher.name().to_string(),
            r.level.map_or("none", |l| l.name()).to_string(),
            r.method.map_or("none", |m| m.name()).to_string(),
            f3(r.acc7_mean),
            f3(r.acc7_std),
            f3(r.f1_mean),
            f3(r.f1_std),
            f3(r.f1_macro_mean),
            format!("{:.4}", r.mae_mean),
            format!("{:.4}", r.corr_mean),
            f3(r.acc2_mean),
            f3(r.f1_binary_mean),
            r.params.to_string(),
            r.seeds.len().to_string(),
            r.seeds.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(" "),
            r.dataset.clone(),
            r.paper_mosei_acc7.map(f3).unwrap_or_default(),
            r.paper_mosei_f1.map(f3).unwrap_or_default(),
            r.acc7_diff_mean.map(f3).unwrap_or_default(),
            r.acc7_diff_ci95.map(|c| f3(c[0])).unwrap_or_default(),
            r.acc7_diff_ci95.map(|c| f3(c[1])).unwrap_or_default(),
        ])
        .expect("writing to memory");
    }
    String::from_utf8(w.into_inner().expect("flushing to memory")).expect("UTF-8 fields")
}

/// TABLE.md: the table in the paper's order (the complete teacher repeated above config 5).
pub fn to_markdown(rows: &[TableRow], latency: Option<&Latency>) -> String {
    let mut s = format!(
        "# Table 1 reproduced\n\n{} Our columns are mean +- sample std over seeds (test split). The paper's columns are its CMU-MOSEI results, for reference only; they were not produced here.\n\n",
        dataset_line(rows)
    );
    let with_events = rows.iter().any(|r| r.event_share_mean.is_some());
    s += "| network | ours Acc-7 % | vs no KD (95 % CI) | CI excludes 0 |";
    if with_events {
        s += " event share: student (no KD; uniform) | event share vs no KD (95 % CI) | teacher's event share |";
    }
    s += " ours F1 % | seeds | params | paper MOSEI Acc-7 | paper MOSEI F1 |\n| --- | --- | --- | --- |";
    if with_events {
        s += " --- | --- | --- |";
    }
    s += " --- | --- | --- | --- | --- |\n";
    let mut printed_complete = false;
    let line = |r: &TableRow, label: String| -> String {
        let (vs, excludes) = match (r.acc7_diff_mean, r.acc7_diff_ci95) {
            (Some(d), Some([lo, hi])) => (
                format!("{d:+.2} [{lo:+.2}, {hi:+.2}]"),
                if lo > 0.0 {
                    "yes (gain)"
                } else if hi < 0.0 {
                    "yes (loss)"
                } else {
                    "no"
                }
                .to_string(),
            ),
            (Some(d), None) => (format!("{d:+.2}"), "-".to_string()),
            _ => ("-".to_string(), "-".to_string()),
        };
        let mut l = format!("| {label} | {:.2} +- {:.2} | {vs} | {excludes} |", r.acc7_mean, r.acc7_std);
        if with_events {
            l += &match (r.event_share_mean, r.nokd_event_share_mean, r.uniform_event_share) {
                (Some(e), n, Some(u)) => format!(" {e:.3} ({}; {u:.3}) in {} |", n.map_or("-".to_string(), |n| format!("{n:.3}")), r.event_transformers.join(", ")),
                _ => " - |".to_string(),
            };
            let over = if r.event_share_compared.len() < r.event_transformers.len() { format!(" in {}", r.event_share_compared.join(", ")) } else { String::new() };
            l += &match (r.event_share_diff_mean, r.event_share_diff_ci95) {
                (Some(d), Some([lo, hi])) => format!(
                    " {d:+.3} [{lo:+.3}, {hi:+.3}]{}{over} |",
                    if lo > 0.0 {
                        " (firm rise)"
                    } else if hi < 0.0 {
                        " (firm fall)"
                    } else {
                        ""
                    }
                ),
                (Some(d), None) => format!(" {d:+.3}{over} |"),
                _ => " - |".to_string(),
            };
            l += &r.teacher_event_share_mean.map_or(" - |".to_string(), |t| format!(" {t:.3} |"));
        }
        let paper = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.3}"));
        l + &format!(" {:.2} +- {:.2} | {} | {} | {} | {} |\n", r.f1_mean, r.f1_std, r.seeds.len(), r.params, paper(r.paper_mosei_acc7), paper(r.paper_mosei_f1))
    };
    let mut previous: Option<&TableRow> = None;
    for r in rows {
        let is_c5_first = r.config == Some(StudentConfig::C5) && r.level.is_some() && !printed_complete;
        // The paper repeats the complete teacher above configuration 5's rows; not when it is
        // the row just above them anyway (a study of configuration 5 alone).
        if is_c5_first {
            if let Some(t) = rows.iter().find(|t| t.is_complete_teacher())
                && !previous.is_some_and(TableRow::is_complete_teacher)
            {
                s += &line(t, format!("{} (again, for config 5)", row_label(t)));
            }
            printed_complete = true;
        }
        s += &line(r, row_label(r));
        previous = Some(r);
    }
    if let Some(l) = latency {
        s += &format!(
            "\nInference latency on {} (batch {}, median): complete teacher {:.2} ms, config-5 student {:.2} ms ({:+.0} %). Paper: 29 ms for the student on one RTX 8000, 22 % less than the teacher.\n",
            l.device,
            l.batch,
            l.teacher_ms,
            l.student_ms,
            100.0 * (l.student_ms / l.teacher_ms - 1.0)
        );
    }
    s += "\nvs no KD: the mean of per-seed Acc-7 differences to the student without KD (paired over the same seeds) with its 95 % t-interval (n - 1 degrees of freedom); an effect is called firm only where the interval excludes 0.\n";
    // Several rows tested against no KD at once: which stay firm when the family-wise error
    // over all of them is held at 5 % (issue 19).
    let distilled: Vec<&TableRow> = rows.iter().filter(|r| r.level.is_some()).collect();
    s += &holm_paragraph(&distilled);
    if let Some(k) = rows.iter().map(|r| r.acc7_diff_per_teacher.len()).max().filter(|&k| k > 1) {
        s += &format!(
            "\nSeveral teachers: a distilled row's runs are {k} teachers x its student seeds (the seeds column counts runs), and its intervals (Acc-7 and event share) are t-intervals over the {k} teachers of each teacher's mean paired difference ({} degrees of freedom), so they hold the teacher-to-teacher variation.\n",
            k - 1
        );
    }
    if with_events {
        s += &format!(
            "\nEvent share: the mean share of attention mass that query rows of the distilled student transformers put on the true event frames (over seeds, layers and those transformers, {EVENT_SHARE_CLIPS} test clips), then the same in the student without KD where it has those transformers, and under uniform attention; the mean of per-seed differences to the student without KD with its 95 % t-interval; and the teacher's own share in the teacher transformers the row distils (what there was to pass on).\n"
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distill::{Level, Method};
    use crate::model::TeacherKind;

    #[test]
    fn mean_and_sample_std() {
        let (m, s) = mean_std(&[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(m, 2.5);
        assert!((s - (5.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert_eq!(mean_std(&[7.0]), (7.0, 0.0));
    }

    /// Against a hand computation: diffs 1, 2, 3 have mean 2, sample sd 1, and the 95 %
    /// t-interval 2 -+ 4.302653 / sqrt(3) = [-0.484138, 4.484138].
    /// The p-value inverts the tabulated 0.975 quantiles (p = 0.05 there), and matches
    /// hand values: t = 1 with 1 df gives 0.5 (the Cauchy distribution), t = 0 gives 1.
    #[test]
    fn t_p_values_invert_the_quantile_table() {
        for df in [1, 2, 4, 9, 29, 30] {
            let p = t_two_sided_p(t_quantile_975(df), df);
            assert!((p - 0.05).abs() < 2e-6, "df {df}: p {p}");
        }
        assert!((t_two_sided_p(1.0, 1) - 0.5).abs() < 1e-12);
        assert!((t_two_sided_p(-1.0, 1) - 0.5).abs() < 1e-12);
        assert_eq!(t_two_sided_p(0.0, 7), 1.0);
        // Normal limit: t = 1.959964 with 10^6 df is p = 0.05.
        assert!((t_two_sided_p(1.959_963_985, 1_000_000) - 0.05).abs() < 1e-6);
        // From an interval: [0.1, 3.9] over 5 units has half-width 1.9 and mean 2.0.
        let se = 1.9 / t_quantile_975(4);
        assert!((p_from_interval(2.0, [0.1, 3.9], 5) - t_two_sided_p(2.0 / se, 4)).abs() < 1e-15);
    }

    /// One teacher: the units are the student seeds. Several: each teacher's mean is one unit,
    /// so three teachers give 2 degrees of freedom whatever the number of student seeds.
    #[test]
    fn paired_summary_takes_teachers_as_units_when_there_are_several() {
        let (m, ci, p, per) = paired_summary(&[(Some(1), 1.0), (Some(1), 2.0), (Some(1), 3.0)]);
        assert_eq!((m, ci, per.len()), (2.0, paired_t_interval(&[1.0, 2.0, 3.0]).1, 0));
        assert!((p.unwrap() - t_two_sided_p(2.0 / (1.0 / 3f64.sqrt()), 2)).abs() < 1e-12);
        let diffs = [(Some(1), 1.0), (Some(1), 3.0), (Some(2), 4.0), (Some(2), 6.0), (Some(3), -1.0), (Some(3), 1.0)];
        let (m, ci, p, per) = paired_summary(&diffs);
        assert_eq!(per, [2.0, 5.0, 0.0]);
        assert!((m - 7.0 / 3.0).abs() < 1e-12);
        let (_, want) = paired_t_interval(&[2.0, 5.0, 0.0]);
        assert_eq!(ci, want);
        let sd = mean_std(&[2.0, 5.0, 0.0]).1;
        assert!((p.unwrap() - t_two_sided_p(m / (sd / 3f64.sqrt()), 2)).abs() < 1e-12);
        // One teacher per seed: each pair is its own teacher's, and the pairs are the units.
        let (_, ci, _, per) = paired_summary(&[(Some(1), 1.0), (Some(2), 2.0), (Some(3), 4.0)]);
        assert_eq!((ci, per.len()), (paired_t_interval(&[1.0, 2.0, 4.0]).1, 0));
        // The pooled six differences would give a narrower, wrong interval.
        let pooled = paired_t_interval(&diffs.map(|d| d.1)).1.unwrap();
        assert!(pooled[1] - pooled[0] < want.unwrap()[1] - want.unwrap()[0]);
    }

    /// Holm by hand: p = (0.01, 0.04, 0.03, 0.2) at 5 %: 0.01 <= 0.05/4 rejects, 0.03 > 0.05/3
    /// stops, so 0.04 and 0.2 are not rejected either, though 0.04 < 0.05.
    #[test]
    fn holm_steps_down_and_stops_at_the_first_failure() {
        assert_eq!(holm_rejects(&[0.01, 0.04, 0.03, 0.2], 0.05), [true, false, false, false]);
        assert_eq!(holm_rejects(&[0.001, 0.012, 0.02], 0.05), [true, true, true]);
        assert_eq!(holm_rejects(&[], 0.05), Vec::<bool>::new());
    }

    #[test]
    fn paired_t_interval_matches_hand_computation() {
        let (m, ci) = paired_t_interval(&[1.0, 2.0, 3.0]);
        assert_eq!(m, 2.0);
        let [lo, hi] = ci.unwrap();
        assert!((lo + 0.484138).abs() < 1e-5 && (hi - 4.484138).abs() < 1e-5, "[{lo}, {hi}]");
        assert_eq!(paired_t_interval(&[1.5]), (1.5, None));
        // Beyond the table: t(0.975, 40) = 2.021075, t(0.975, 120) = 1.979930.
        assert!((t_quantile_975(40) - 2.021075).abs() < 2e-4 && (t_quantile_975(120) - 1.979930).abs() < 1e-4);
        assert!((t_quantile_975(31) - 2.039513).abs() < 3e-4);
    }

    #[test]
    fn level_and_method_names_round_trip_through_rows() {
        let r = RowSpec::Distilled { config: crate::model::StudentConfig::C5, level: Level::AttentionMap, method: Method::EdamT };
        let (role, config, teacher, level, method) = describe(&r);
        assert_eq!((role, config, teacher, level, method), (RowRole::Student, Some(StudentConfig::C5), TeacherKind::Complete, Some(Level::AttentionMap), Some(Method::EdamT)));
        assert_eq!(describe(&RowSpec::Teacher(TeacherKind::Audio)).2, TeacherKind::Audio);
        // A table row names its plan row again, and the files keep their texts.
        for spec in table_rows() {
            let (role, config, teacher, level, method) = describe(&spec);
            let json = serde_json::json!({"role": role, "teacher": teacher, "level": level.map_or("none", |l| l.name()), "method": method.map_or("none", |m| m.name())});
            let expected = match spec {
                RowSpec::Teacher(t) => serde_json::json!({"role": "teacher", "teacher": t.name(), "level": "none", "method": "none"}),
                RowSpec::StudentNoKd(_) => serde_json::json!({"role": "student", "teacher": "complete", "level": "none", "method": "none"}),
                RowSpec::Distilled { level, method, config } | RowSpec::Control { level, method, config } => {
                    serde_json::json!({"role": "student", "teacher": crate::distill::teacher_for_config(config).name(), "level": level.name(), "method": method.name()})
                }
            };
            assert_eq!(json, expected);
            let control = matches!(spec, RowSpec::Control { .. });
            assert_eq!(TableRow { role, config, teacher, level, method, control, ..committed_row() }.spec(), spec);
        }
    }

    /// The renderer reads nothing but its arguments: the committed study's rows give its
    /// verdicts, and the gathered facts appear only when given.
    #[test]
    fn report_renders_the_rows_and_only_the_facts_given() {
        let rows: Vec<TableRow> = serde_json::from_str(include_str!("../../../../docs/results/lookup-rerun-2026-12-03/table.json")).unwrap();
        let plain = render_report(&rows, "title\n\nTABLE", None, &ReportFacts { acc7_picture: "acc7.png".into(), ..Default::default() });
        assert!(plain.contains("One complete teacher (seed 1) taught the students of every seed"));
        let edam_s = plain.lines().find(|l| l.starts_with("- **Student c5: EDAM-S on attention-map**")).expect("the EDAM-S row");
        assert!(edam_s.contains("(a firm gain)"), "{edam_s}");
        assert!(!plain.contains("branch dropout") && !plain.contains("## Maps of the best"));
        assert!(plain.ends_with("TABLE"));
        let facts = ReportFacts {
            acc7_picture: "acc7.png".into(),
            teacher_branch_dropout: Some(0.25),
            best_maps: Some(BestMaps { label: "L".into(), seed: 3, pictures: vec![("V<-A".into(), "report-maps/compare-V_from_A.png".into())] }),
            ..Default::default()
        };
        let full = render_report(&rows, "title\n\nTABLE", None, &facts);
        assert!(full.contains("branch dropout p = 0.25"));
        assert!(full.contains("## Maps of the best attention-level student (L, seed 3)") && full.contains("![V<-A](report-maps/compare-V_from_A.png)"));
        assert_eq!(best_attention_row(&rows).map(row_label).as_deref(), Some("Student c5: EDAM-T on attention-map"));
    }

    /// TABLE.md gives Holm's verdicts across the distilled rows that have a p-value, the same
    /// as `holm_rejects` on them (the committed three-teacher study).
    #[test]
    fn table_gives_holm_verdicts_across_its_distilled_rows() {
        let rows: Vec<TableRow> = serde_json::from_str(include_str!("../../../../docs/results/lookup-k3/table.json")).expect("committed table.json");
        let tested: Vec<&TableRow> = rows.iter().filter(|r| r.level.is_some() && r.acc7_diff_p.is_some()).collect();
        assert!(tested.len() >= 2, "the study tests several rows");
        let md = to_markdown(&rows, None);
        let line = md.lines().find(|l| l.starts_with(&format!("Holm-adjusted across these {} rows (family-wise error 5 %), Acc-7", tested.len()))).expect("a Holm line for Acc-7");
        let ps: Vec<f64> = tested.iter().map(|r| r.acc7_diff_p.unwrap()).collect();
        for (r, firm) in tested.iter().zip(holm_rejects(&ps, 0.05)) {
            let verdict = format!("{} p = {:.4} ({})", row_label(r), r.acc7_diff_p.unwrap(), if firm { "firm" } else { "not firm" });
            assert!(line.contains(&verdict), "{verdict} not in {line}");
        }
    }

    /// A row distilled in the conventional direction says so in its label and in table.json;
    /// a literal row's file is unchanged (no field).
    #[test]
    fn a_conventional_edam_row_is_named_as_such() {
        let rows: Vec<TableRow> = serde_json::from_str(include_str!("../../../../docs/results/lookup/table.json")).expect("committed table.json");
        let edam_s = rows.iter().find(|r| r.method == Some(Method::EdamS)).expect("an EDAM-S row").clone();
        assert_eq!(row_label(&edam_s), "Student c5: EDAM-S on attention-map");
        assert!(serde_json::to_value(&edam_s).unwrap().get("edam_orientation").is_none());
        let conventional = TableRow { edam_orientation: Some(crate::distill::Orientation::Conventional), ..edam_s };
        assert_eq!(row_label(&conventional), "Student c5: EDAM-S (conventional) on attention-map");
        assert_eq!(serde_json::to_value(&conventional).unwrap()["edam_orientation"], "conventional");
    }

    fn committed_row() -> TableRow {
        let rows: Vec<TableRow> = serde_json::from_str(include_str!("../../../../docs/results/lookup/table.json")).expect("committed table.json");
        rows[0].clone()
    }

    /// The typed rows write table.json as the string fields did: a study's file written
    /// before the fields were typed reads back to the same JSON, field for field.
    #[test]
    fn committed_table_json_reads_back_field_for_field() {
        let text = include_str!("../../../../docs/results/lookup-rerun-2026-12-03/table.json");
        let rows: Vec<TableRow> = serde_json::from_str(text).expect("committed table.json");
        assert_eq!(serde_json::to_value(&rows).unwrap(), serde_json::from_str::<serde_json::Value>(text).unwrap());
    }

    /// The complete teacher is repeated above configuration 5's rows only when other rows sit
    /// between them (a committed study of configuration 5 alone, then with a configuration-1
    /// row added in between).
    #[test]
    fn complete_teacher_is_repeated_above_config_5_only_when_rows_separate_them() {
        let rows: Vec<TableRow> = serde_json::from_str(include_str!("../../../../docs/results/lookup/table.json")).expect("committed table.json");
        let again = |rows: &[TableRow]| to_markdown(rows, None).matches("(again, for config 5)").count();
        assert_eq!(again(&rows), 0, "teacher directly above config 5");
        let teacher = rows.iter().position(|r| r.role == RowRole::Teacher).expect("a teacher row");
        let mut c1 = rows[teacher + 1].clone();
        c1.config = Some(crate::model::StudentConfig::C1);
        let mut separated = rows.clone();
        separated.insert(teacher + 1, c1);
        assert_eq!(again(&separated), 1);
    }
}
