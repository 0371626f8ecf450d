//! The library's option types (`Choice`) as clap values: clap stays in `cli`.

use clap::builder::PossibleValue;

use crate::choice::Choice;

/// `clap::ValueEnum` for each type, from its `Choice` names and help.
macro_rules! value_enums {
    ($($t:ty),+ $(,)?) => {
        $(impl clap::ValueEnum for $t {
            fn value_variants<'a>() -> &'a [Self] {
                <$t as Choice>::ALL
            }
            fn to_possible_value(&self) -> Option<PossibleValue> {
                Some(PossibleValue::new(self.name()).help(self.help()))
            }
        })+
    };
}

value_enums!(
    crate::config::Preset,
    crate::config::DeviceKind,
    crate::model::TeacherKind,
    crate::model::StudentStreams,
    crate::distill::Level,
    crate::distill::Method,
    crate::distill::TeacherSignal,
    crate::eval::maps::MapSplit,
    crate::data::synth::Regime,
    crate::data::missing::MissingMode,
    crate::data::csd::align::Align,
    crate::bench::Case,
    crate::predict::SplitChoice,
    crate::predict::Format,
    crate::study::plan::RowSet,
);
