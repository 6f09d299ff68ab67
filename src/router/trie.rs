//! A token trie holding wildcard subscriptions.
//!
//! Owns the patterns that contain `*` or `>` tokens. Each level is one `.`-separated
//! token; `*` has its own branch and a final `>` is stored on the node before it.
//! Nodes left with no subscriber and no children are pruned on removal.

use rustc_hash::FxHashMap;

/// One trie level, holding subscribers of type `S`.
pub(super) struct Node<S> {
    /// Literal next tokens.
    children: FxHashMap<Box<str>, Node<S>>,
    /// The `*` branch.
    star: Option<Box<Node<S>>>,
    /// Patterns that end at this node.
    here: Vec<S>,
    /// Patterns that end with `>` right after this node (one or more further tokens).
    tail: Vec<S>,
}

impl<S> Default for Node<S> {
    fn default() -> Self {
        Node {
            children: FxHashMap::default(),
            star: None,
            here: Vec::new(),
            tail: Vec::new(),
        }
    }
}

/// Splits the first token off `rest`.
fn split(rest: &str) -> (&str, Option<&str>) {
    match rest.split_once('.') {
        Some((tok, more)) => (tok, Some(more)),
        None => (rest, None),
    }
}

impl<S: Copy + Eq> Node<S> {
    pub(super) fn is_empty(&self) -> bool {
        self.children.is_empty()
            && self.star.is_none()
            && self.here.is_empty()
            && self.tail.is_empty()
    }

    /// Inserts `conn` under `pattern`.
    pub(super) fn insert(&mut self, pattern: &str, conn: S) {
        let (tok, more) = split(pattern);
        match (tok, more) {
            (">", None) => self.tail.push(conn),
            (_, more) => {
                let child = if tok == "*" {
                    self.star.get_or_insert_with(Default::default)
                } else {
                    self.children.entry(tok.into()).or_default()
                };
                match more {
                    Some(more) => child.insert(more, conn),
                    None => child.here.push(conn),
                }
            }
        }
    }

    /// Removes `conn` from `pattern`, pruning empty nodes; returns whether it was there.
    pub(super) fn remove(&mut self, pattern: &str, conn: S) -> bool {
        fn take<S: Copy + Eq>(list: &mut Vec<S>, conn: S) -> bool {
            match list.iter().position(|&c| c == conn) {
                Some(pos) => {
                    list.swap_remove(pos);
                    if list.is_empty() {
                        *list = Vec::new();
                    }
                    true
                }
                None => false,
            }
        }
        let (tok, more) = split(pattern);
        if tok == ">" && more.is_none() {
            return take(&mut self.tail, conn);
        }
        let child = if tok == "*" {
            match self.star.as_deref_mut() {
                Some(c) => c,
                None => return false,
            }
        } else {
            match self.children.get_mut(tok) {
                Some(c) => c,
                None => return false,
            }
        };
        let removed = match more {
            Some(more) => child.remove(more, conn),
            None => take(&mut child.here, conn),
        };
        if removed && child.is_empty() {
            if tok == "*" {
                self.star = None;
            } else {
                self.children.remove(tok);
            }
        }
        removed
    }

    /// Appends every subscriber whose pattern matches `channel` (duplicates possible).
    pub(super) fn collect(&self, channel: &str, out: &mut Vec<S>) {
        let (tok, more) = split(channel);
        // `>` after this node matches because at least one token (tok) remains.
        out.extend_from_slice(&self.tail);
        for child in [self.children.get(tok), self.star.as_deref()]
            .into_iter()
            .flatten()
        {
            match more {
                Some(more) => child.collect(more, out),
                None => out.extend_from_slice(&child.here),
            }
        }
    }
}

#[cfg(test)]
impl<S: Copy + Eq> Node<S> {
    /// Whether the whole trie has been pruned away.
    pub(super) fn is_empty_for_tests(&self) -> bool {
        self.is_empty()
    }
}
