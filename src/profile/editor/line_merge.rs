//! A three-way merge of two versions of a file by lines (for the careful write).

/// A three-way merge by lines: the changes from `base` to `theirs` made on `ours`. Where
/// both inserted lines at one place, `ours`' come first, then `theirs`' (only one of them
/// when it already holds the other's); where both changed the same lines, `ours` is kept
/// (the later write wins). `None` when the files are too large to compare.
pub(super) fn merge_lines(base: &[u8], theirs: &[u8], ours: &[u8]) -> Option<Vec<u8>> {
    fn lines(b: &[u8]) -> Vec<&[u8]> {
        b.split_inclusive(|&c| c == b'\n').collect()
    }
    let (b, t, o) = (lines(base), lines(theirs), lines(ours));
    let in_theirs = matching_lines(&b, &t)?;
    let in_ours = matching_lines(&b, &o)?;
    let mut out = Vec::with_capacity(ours.len() + theirs.len());
    let (mut bi, mut ti, mut oi) = (0, 0, 0);
    let stable = (0..b.len())
        .filter_map(|i| Some((i, in_theirs[i]?, in_ours[i]?)))
        .chain([(b.len(), t.len(), o.len())]);
    for (bj, tj, oj) in stable {
        let (rb, rt, ro) = (&b[bi..bj], &t[ti..tj], &o[oi..oj]);
        let taken: &[&[&[u8]]] = if rt == rb || rt == ro {
            &[ro]
        } else if ro == rb {
            &[rt]
        } else if rb.is_empty() && !contains(ro, rt) && !contains(rt, ro) {
            &[ro, rt]
        } else if rb.is_empty() && contains(rt, ro) {
            &[rt]
        } else {
            &[ro]
        };
        for line in taken.iter().flat_map(|r| r.iter()) {
            out.extend_from_slice(line);
        }
        if let Some(line) = o.get(oj) {
            out.extend_from_slice(line);
        }
        (bi, ti, oi) = (bj + 1, tj + 1, oj + 1);
    }
    Some(out)
}

/// Whether `part` is a run of consecutive lines of `whole`.
pub(super) fn contains(whole: &[&[u8]], part: &[&[u8]]) -> bool {
    part.is_empty() || whole.windows(part.len()).any(|w| w == part)
}

/// For each line of `a`, the line of `b` it is paired with in a longest common subsequence
/// (common first and last lines are paired directly; the rest by a table, `None` when that
/// would exceed a few million cells).
pub(super) fn matching_lines(a: &[&[u8]], b: &[&[u8]]) -> Option<Vec<Option<usize>>> {
    const MAX_CELLS: usize = 4_000_000;
    let mut pair = vec![None; a.len()];
    let head = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let tail = a[head..]
        .iter()
        .rev()
        .zip(b[head..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    for (i, p) in pair.iter_mut().enumerate().take(head) {
        *p = Some(i);
    }
    for k in 1..=tail {
        pair[a.len() - k] = Some(b.len() - k);
    }
    let (ma, mb) = (&a[head..a.len() - tail], &b[head..b.len() - tail]);
    if ma.is_empty() || mb.is_empty() {
        return Some(pair);
    }
    if (ma.len() + 1).saturating_mul(mb.len() + 1) > MAX_CELLS {
        return None;
    }
    let w = mb.len() + 1;
    let mut len = vec![0u32; (ma.len() + 1) * w];
    for i in (0..ma.len()).rev() {
        for j in (0..mb.len()).rev() {
            len[i * w + j] = if ma[i] == mb[j] {
                len[(i + 1) * w + j + 1] + 1
            } else {
                len[(i + 1) * w + j].max(len[i * w + j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    while i < ma.len() && j < mb.len() {
        if ma[i] == mb[j] {
            pair[head + i] = Some(head + j);
            (i, j) = (i + 1, j + 1);
        } else if len[(i + 1) * w + j] >= len[i * w + j + 1] {
            i += 1;
        } else {
            j += 1;
        }
    }
    Some(pair)
}
