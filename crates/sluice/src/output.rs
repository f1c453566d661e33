//! Writing to stdout. `println!` panics when stdout is closed (`sluice status | head -1`), and
//! a panic after a finished copy would turn a success into exit status 101: these macros
//! write and ignore a closed pipe instead (the output has no reader left).

use std::io::Write;

/// Writes formatted text to stdout; errors (a closed pipe) are ignored.
pub fn write(args: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_fmt(args);
    let _ = out.flush();
}

/// `print!` that survives a closed stdout.
#[macro_export]
macro_rules! out {
    ($($t:tt)*) => { $crate::output::write(format_args!($($t)*)) };
}

/// `println!` that survives a closed stdout.
#[macro_export]
macro_rules! outln {
    () => { $crate::output::write(format_args!("\n")) };
    ($($t:tt)*) => { $crate::output::write(format_args!("{}\n", format_args!($($t)*))) };
}
