//! Router tests: fixed cases and a property test against the reference matcher.

use super::*;
use proptest::prelude::*;

type ConnId = usize;

fn lookup(r: &mut Router<ConnId>, channel: &str) -> Vec<ConnId> {
    let mut out = Vec::new();
    r.lookup(channel, &mut out);
    out.sort_unstable();
    out
}

#[test]
fn reference_matcher() {
    assert!(pattern_matches("a.b", "a.b"));
    assert!(!pattern_matches("a.b", "a.b.c"));
    assert!(pattern_matches("a.*", "a.b"));
    assert!(!pattern_matches("a.*", "a"));
    assert!(!pattern_matches("a.*", "a.b.c"));
    assert!(pattern_matches("a.>", "a.b.c"));
    assert!(!pattern_matches("a.>", "a"));
    assert!(pattern_matches(">", "x"));
    assert!(pattern_matches("*.*.>", "a.b.c"));
    assert!(!pattern_matches("*.*.>", "a.b"));
    assert!(!pattern_matches("A.b", "a.b"));
}

#[test]
fn one_match_per_matching_subscription() {
    let mut r = Router::new();
    r.insert("a.b", false, 1);
    r.insert("a.*", true, 1);
    r.insert("a.>", true, 1);
    r.insert("a.>", true, 2);
    r.insert("b.c", false, 3);
    // Connection 1 holds three matching patterns: three matches; whether it receives
    // one copy or three is the delivering codec's rule.
    assert_eq!(lookup(&mut r, "a.b"), vec![1, 1, 1, 2]);
    assert_eq!(lookup(&mut r, "a.b.c"), vec![1, 2]);
    assert_eq!(lookup(&mut r, "a"), Vec::<ConnId>::new());
    assert_eq!(lookup(&mut r, "b.c"), vec![3]);
}

#[test]
fn lookup_says_when_a_subscriber_may_repeat() {
    let mut r = Router::new();
    r.insert("a.b", false, 1);
    r.insert("a.b", false, 2);
    let mut out = Vec::new();
    assert!(!r.lookup("a.b", &mut out), "exact subscribers are distinct");
    r.insert("a.*", true, 1);
    out.clear();
    assert!(r.lookup("a.b", &mut out), "a wildcard matched");
    out.clear();
    assert!(!r.lookup("a.c.d", &mut out));
}

#[test]
fn removal_is_exact_and_prunes() {
    let mut r = Router::new();
    r.insert("a.*", true, 1);
    r.insert("a.x", false, 1);
    assert!(r.remove("a.x", false, 1));
    assert_eq!(lookup(&mut r, "a.x"), vec![1], "a.* still matches");
    assert!(!r.remove("a.x", false, 1));
    assert!(r.remove("a.*", true, 1));
    assert!(r.wild.is_empty_for_tests());
    assert!(r.exact.is_empty());
    let s = r.stats();
    assert_eq!(
        (
            s.inserts,
            s.removes,
            s.exact_channels,
            s.wildcard_subscriptions
        ),
        (2, 2, 0, 0)
    );
}

fn token() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("a".to_string()),
        Just("b".to_string()),
        Just("c".to_string())
    ]
}

fn channel() -> impl Strategy<Value = String> {
    prop::collection::vec(token(), 1..5).prop_map(|t| t.join("."))
}

fn pattern() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(prop_oneof![3 => token(), 1 => Just("*".to_string())], 1..5),
        any::<bool>(),
    )
        .prop_map(|(mut t, gt)| {
            if gt {
                t.push(">".to_string());
            }
            t.join(".")
        })
}

proptest! {
    #[test]
    fn trie_agrees_with_reference(
        subs in prop::collection::vec((0usize..6, pattern()), 0..40),
        removals in prop::collection::vec(0usize..40, 0..20),
        channels in prop::collection::vec(channel(), 1..20),
    ) {
        let mut r = Router::new();
        let mut live: Vec<(usize, String)> = Vec::new();
        for (conn, p) in &subs {
            if !live.iter().any(|(c, q)| c == conn && q == p) {
                let wild = p.split('.').any(|t| t == "*" || t == ">");
                r.insert(p, wild, *conn);
                live.push((*conn, p.clone()));
            }
        }
        for i in removals {
            if i < live.len() {
                let (conn, p) = live.remove(i);
                let wild = p.split('.').any(|t| t == "*" || t == ">");
                prop_assert!(r.remove(&p, wild, conn));
            }
        }
        for ch in &channels {
            let mut want: Vec<ConnId> = live
                .iter()
                .filter(|(_, p)| pattern_matches(p, ch))
                .map(|(c, _)| *c)
                .collect();
            want.sort_unstable();
            prop_assert_eq!(lookup(&mut r, ch), want.clone());
            // Without wildcard subscriptions the exact list is the whole answer.
            let wild_live = live.iter().any(|(_, p)| p.split('.').any(|t| t == "*" || t == ">"));
            match r.lookup_exact(ch) {
                Some(exact) => {
                    prop_assert!(!wild_live);
                    let mut exact = exact.to_vec();
                    exact.sort_unstable();
                    prop_assert_eq!(exact, want.clone());
                }
                None => prop_assert!(wild_live),
            }
        }
        for (conn, p) in live {
            let wild = p.split('.').any(|t| t == "*" || t == ">");
            prop_assert!(r.remove(&p, wild, conn));
        }
        prop_assert!(r.exact.is_empty());
        prop_assert!(r.wild.is_empty_for_tests());
    }
}

/// `lookup` says whether a wildcard matched (only then can a subscriber appear twice,
/// and fan-out deduplicates), counts lookups and matches, and `is_pruned` sees an index
/// emptied back to nothing. Mutants of each survived the other tests.
#[test]
fn lookup_reports_wildcards_and_counts() {
    let mut r: Router<ConnId> = Router::new();
    assert!(r.is_pruned());
    r.insert("a.b", false, 1);
    r.insert("a.b", false, 2);
    let mut out = Vec::new();
    assert!(!r.lookup("a.b", &mut out), "exact matches only");
    assert_eq!(out.len(), 2);
    assert!(!r.lookup("zzz", &mut out), "no match at all");
    r.insert("a.*", true, 1);
    out.clear();
    assert!(r.lookup("a.b", &mut out), "a wildcard matched");
    assert_eq!(out.len(), 3);
    let s = r.stats();
    assert_eq!((s.lookups, s.matches), (3, 5));
    assert!(!r.is_pruned());
    r.remove("a.b", false, 1);
    r.remove("a.b", false, 2);
    assert!(!r.is_pruned(), "the wildcard is still there");
    r.remove("a.*", true, 1);
    assert!(r.is_pruned());
}

/// `lookup_exact` answers only while no wildcard subscription exists, and counts as
/// `lookup` does when it answers (a single subscriber's publish skips the match list).
#[test]
fn lookup_exact_only_without_wildcards() {
    let mut r: Router<ConnId> = Router::new();
    r.insert("a.b", false, 1);
    assert_eq!(r.lookup_exact("a.b"), Some(&[1][..]));
    assert_eq!(r.lookup_exact("a.c"), Some(&[][..]));
    let s = r.stats();
    assert_eq!((s.lookups, s.matches), (2, 1));
    r.insert("x.*", true, 2);
    assert_eq!(r.lookup_exact("a.b"), None, "a wildcard could match");
    assert_eq!(
        r.stats().lookups,
        2,
        "nothing counted when it does not answer"
    );
    r.remove("x.*", true, 2);
    assert_eq!(r.lookup_exact("a.b"), Some(&[1][..]));
}

/// The inline name compare agrees with `==` on every length around its word cases.
#[test]
fn same_name_agrees_with_eq() {
    for len in 0..40 {
        let a: String = (0..len).map(|i| (b'a' + (i % 26) as u8) as char).collect();
        assert!(same_name(&a, &a.clone()));
        for at in 0..len {
            let mut b = a.clone().into_bytes();
            b[at] = b'Z';
            let b = String::from_utf8(b).expect("ascii");
            assert!(!same_name(&a, &b), "{a} {b}");
        }
        assert!(!same_name(&a, &format!("{a}x")));
    }
}
