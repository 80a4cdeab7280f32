//! Float repr and `fromisoformat` against tables CPython 3.11 produced
//! (`gen_reference_tables.py`).

use serde_json::Value as J;
use z4j_protocol::canonical::python_float_repr;
use z4j_protocol::isotime::parse_python_isoformat;

fn tables() -> J {
    let path = format!(
        "{}/tests/data/python_reference_tables.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn float_repr_matches_cpython_on_every_sample() {
    let t = tables();
    let rows = t["float_repr"].as_array().unwrap();
    assert!(rows.len() > 8000);
    let mut failures = Vec::new();
    for row in rows {
        let x = f64::from_bits(row["bits"].as_u64().unwrap());
        let want = row["repr"].as_str().unwrap();
        let Some(got) = python_float_repr(x) else {
            panic!("no repr for {x:?} bits {}", x.to_bits())
        };
        if got != want {
            failures.push(format!("{x:e}: got {got}, CPython {want}"));
        }
        // And the repr parses back to the same double.
        assert_eq!(got.parse::<f64>().unwrap().to_bits(), x.to_bits());
    }
    assert!(
        failures.is_empty(),
        "{} mismatches: {:?}",
        failures.len(),
        &failures[..failures.len().min(10)]
    );
}

#[test]
fn fromisoformat_matches_cpython_on_every_sample() {
    let t = tables();
    let rows = t["fromisoformat"].as_array().unwrap();
    let mut failures = Vec::new();
    for row in rows {
        let input = row["input"].as_str().unwrap();
        let got = parse_python_isoformat(input).map(|p| (p.micros, p.aware));
        let want = if row["ok"].as_bool().unwrap() {
            Some((
                row["micros"].as_i64().unwrap(),
                row["aware"].as_bool().unwrap(),
            ))
        } else {
            None
        };
        if got != want {
            failures.push(format!("{input:?}: got {got:?}, CPython {want:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches: {:#?}",
        failures.len(),
        &failures[..failures.len().min(15)]
    );
}
