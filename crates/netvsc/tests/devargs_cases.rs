//! The shared devargs table (`devargs_cases.json`, also run by `__test__/devargs.spec.ts` against the TypeScript
//! parser): every input gives exactly the values or the error kind and message the table records.

use netvsc::{Devargs, Error};
use serde_json::Value;

/// The input of a case: `input`, or `parts` = `[[text, repeat], ...]` concatenated (for long inputs).
fn input_of(case: &Value) -> String {
    if let Some(s) = case["input"].as_str() {
        return s.to_string();
    }
    let parts = case["parts"].as_array().expect("a case has input or parts");
    parts
        .iter()
        .map(|p| {
            p[0].as_str()
                .unwrap()
                .repeat(p[1].as_u64().unwrap() as usize)
        })
        .collect()
}

#[test]
fn every_shared_case() {
    let text = include_str!("devargs_cases.json");
    let cases: Vec<Value> = serde_json::from_str(text).expect("devargs_cases.json is JSON");
    assert!(cases.len() >= 50, "the table has {} cases", cases.len());
    for case in &cases {
        let input = input_of(case);
        let shown: String = input.chars().take(40).collect();
        match (Devargs::parse(&input), case.get("ok"), case.get("error")) {
            (Ok(d), Some(want), None) => {
                let got = serde_json::json!({
                    "latency": d.latency_us,
                    "rx_copybreak": d.rx_copybreak,
                    "tx_copybreak": d.tx_copybreak,
                    "rx_extmbuf_enable": d.rx_extmbuf_enable,
                    "numa_aware": d.numa_aware,
                });
                assert_eq!(&got, want, "{shown:?}");
            }
            (Err(e @ Error::Devarg { .. }), None, Some(want)) => {
                let Error::Devarg { kind, .. } = &e else {
                    unreachable!()
                };
                assert_eq!(kind.name(), want["kind"].as_str().unwrap(), "{shown:?}");
                assert_eq!(
                    e.to_string(),
                    want["message"].as_str().unwrap(),
                    "{shown:?}"
                );
            }
            (got, ok, err) => panic!("{shown:?}: got {got:?}, table says ok {ok:?} error {err:?}"),
        }
    }
}
