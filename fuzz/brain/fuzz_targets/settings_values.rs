//! Settings from the fuzzer: any values for any of the documented variables
//! are either accepted or refused with errors that name a variable and
//! never echo a secret's value; an accepted configuration renders (as
//! `z4j config` shows it) without its secrets.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use z4j_brain::settings::{self, LoadError, LoadInput, CATALOG};

#[derive(Arbitrary, Debug)]
struct Input {
    values: Vec<(u16, String)>,
}

/// Appended to every secret's value: an error or a rendering holding it
/// shows (part of) a secret.
const MARK: char = '\u{1F511}';

fuzz_target!(|input: Input| {
    if CATALOG.is_empty() {
        return;
    }
    let home = std::env::temp_dir().join("z4j-fuzz-settings-no-such-home");
    let mut env = vec![("Z4J_HOME".to_owned(), home.display().to_string())];
    for (i, value) in input.values.iter().take(16) {
        let spec = &CATALOG[usize::from(*i) % CATALOG.len()];
        let value = if spec.secret {
            format!("{value}{MARK}")
        } else {
            value.clone()
        };
        env.push((spec.env.to_owned(), value));
    }
    // The fuzzer may put the mark in a value that is shown.
    if env
        .iter()
        .any(|(k, v)| v.contains(MARK) && !CATALOG.iter().any(|s| s.secret && s.env == k))
    {
        return;
    }
    let loaded = settings::load(&LoadInput {
        env,
        cwd: None,
        cli: Vec::new(),
    });
    match loaded {
        Ok(l) => {
            let shown = l.render(false);
            assert!(!shown.contains(MARK), "a secret is shown: {shown}");
        }
        Err(LoadError::Invalid(errors)) => {
            assert!(!errors.is_empty());
            for e in &errors {
                assert!(
                    e.variable.starts_with("Z4J_"),
                    "an error names no variable: {e}"
                );
                assert!(!e.problem.contains(MARK), "{e} echoes a secret");
            }
        }
        Err(LoadError::File(_)) => {}
    }
});
