//! Splicing generated text into `docs/BENCHMARKS.md`: only the regions between
//! `<!-- BEGIN GENERATED:name -->` and `<!-- END GENERATED:name -->` are replaced; all
//! prose around them is kept byte for byte. A missing document starts from [`TEMPLATE`].

use std::collections::BTreeMap;

/// The first version of the document: hand-written sections with placeholders, and the
/// generated regions. After the first run people edit the prose; the generator never
/// touches it again.
pub const TEMPLATE: &str = include_str!("template.md");

/// What went wrong while splicing.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpliceError {
    /// A BEGIN marker without its END.
    #[error("region `{0}` has a BEGIN marker but no END marker")]
    Unterminated(String),
}

fn begin(name: &str) -> String {
    format!("<!-- BEGIN GENERATED:{name} -->")
}

fn end(name: &str) -> String {
    format!("<!-- END GENERATED:{name} -->")
}

/// Replaces every region of `doc` named in `regions` with its new text. Returns the new
/// document and the names of regions that `regions` has but `doc` lacks (those are not
/// added: where they go is the author's choice).
pub fn splice(
    doc: &str,
    regions: &BTreeMap<String, String>,
) -> Result<(String, Vec<String>), SpliceError> {
    let mut out = doc.to_string();
    let mut missing = Vec::new();
    for (name, body) in regions {
        let (b, e) = (begin(name), end(name));
        let Some(start) = out.find(&b) else {
            missing.push(name.clone());
            continue;
        };
        let after_begin = start + b.len();
        let Some(stop) = out[after_begin..].find(&e).map(|i| i + after_begin) else {
            return Err(SpliceError::Unterminated(name.clone()));
        };
        let mut text = String::with_capacity(body.len() + 2);
        text.push('\n');
        text.push_str(body.trim_end());
        text.push('\n');
        out.replace_range(after_begin..stop, &text);
    }
    Ok((out, missing))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_prose_and_replaces_regions() {
        let doc = "# T\nprose\n<!-- BEGIN GENERATED:a -->\nold\n<!-- END GENERATED:a -->\nmore\n";
        let mut r = BTreeMap::new();
        r.insert("a".to_string(), "new\n".to_string());
        r.insert("b".to_string(), "x".to_string());
        let (out, missing) = splice(doc, &r).unwrap_or_default();
        assert_eq!(
            out,
            "# T\nprose\n<!-- BEGIN GENERATED:a -->\nnew\n<!-- END GENERATED:a -->\nmore\n"
        );
        assert_eq!(missing, vec!["b".to_string()]);
        // Idempotent.
        let (again, _) = splice(&out, &r).unwrap_or_default();
        assert_eq!(again, out);
    }

    #[test]
    fn unterminated_region_is_an_error() {
        let doc = "<!-- BEGIN GENERATED:a -->\nold\n";
        let mut r = BTreeMap::new();
        r.insert("a".to_string(), "new".to_string());
        assert_eq!(
            splice(doc, &r),
            Err(SpliceError::Unterminated("a".to_string()))
        );
    }

    #[test]
    fn template_has_every_region_closed() {
        for line in TEMPLATE.lines() {
            if let Some(name) = line
                .strip_prefix("<!-- BEGIN GENERATED:")
                .and_then(|s| s.strip_suffix(" -->"))
            {
                assert!(TEMPLATE.contains(&end(name)), "{name}");
            }
        }
    }
}
