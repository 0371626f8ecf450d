//! Closed sets of named options (`Choice`): what a config field or a command-line value may be,
//! with each value's name and a line of help. The library's option types implement it; `cli`
//! turns each into a clap value (`cli::choices`), so clap stays out of the library's types.

/// A type with a fixed list of values, each with a name (as written on the command line and,
/// where the type is saved, by serde) and a line of help.
pub trait Choice: Copy + 'static {
    /// Every value, in the order `--help` lists them.
    const ALL: &'static [Self];

    /// The value's name.
    fn name(self) -> &'static str;

    /// One line on what the value means.
    fn help(self) -> &'static str;

    /// The value named `name`, if any.
    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|v| v.name() == name)
    }
}

/// `impl_choice!(Type { Variant => "name", "help"; ... })` implements `Choice`.
macro_rules! impl_choice {
    ($t:ty { $($variant:ident => $name:literal, $help:literal;)+ }) => {
        impl $crate::choice::Choice for $t {
            const ALL: &'static [Self] = &[$(Self::$variant),+];
            fn name(self) -> &'static str {
                match self {
                    $(Self::$variant => $name),+
                }
            }
            fn help(self) -> &'static str {
                match self {
                    $(Self::$variant => $help),+
                }
            }
        }
    };
}
pub(crate) use impl_choice;
