//! Aligned text tables, like `calicoctl` and `kubectl` print them.

pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Self {
        Table {
            header: header.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Columns padded to their widest cell, two spaces apart; no trailing blanks.
    pub fn render(&self) -> String {
        let cols = self.header.len();
        let mut width = vec![0usize; cols];
        for r in std::iter::once(&self.header).chain(self.rows.iter()) {
            for (i, c) in r.iter().enumerate().take(cols) {
                width[i] = width[i].max(c.chars().count());
            }
        }
        let mut out = String::new();
        for r in std::iter::once(&self.header).chain(self.rows.iter()) {
            let mut line = String::new();
            for (i, w) in width.iter().enumerate() {
                let cell = r.get(i).map(String::as_str).unwrap_or("");
                line.push_str(cell);
                if i + 1 < cols {
                    line.push_str(&" ".repeat(w - cell.chars().count() + 2));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

impl Table {
    /// The boxed, centred-header layout `calicoctl node status` prints.
    pub fn render_boxed(&self) -> String {
        let cols = self.header.len();
        let mut width = vec![0usize; cols];
        for r in std::iter::once(&self.header).chain(self.rows.iter()) {
            for (i, c) in r.iter().enumerate().take(cols) {
                width[i] = width[i].max(c.chars().count());
            }
        }
        let rule: String = width
            .iter()
            .map(|w| format!("+{}", "-".repeat(w + 2)))
            .collect::<String>()
            + "+\n";
        let line = |cells: &Vec<String>, centre: bool| {
            let mut out = String::new();
            for (i, w) in width.iter().enumerate() {
                let c = cells.get(i).map(String::as_str).unwrap_or("");
                let pad = w - c.chars().count();
                let (l, r) = if centre { (pad / 2, pad - pad / 2) } else { (0, pad) };
                out.push_str(&format!("| {}{}{} ", " ".repeat(l), c, " ".repeat(r)));
            }
            out + "|\n"
        };
        let mut out = rule.clone();
        out.push_str(&line(&self.header, true));
        out.push_str(&rule);
        for r in &self.rows {
            out.push_str(&line(r, false));
        }
        out.push_str(&rule);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns_columns() {
        let mut t = Table::new(&["A", "LONG HEADER", "C"]);
        t.row(vec!["xxxx".into(), "y".into(), "".into()]);
        assert_eq!(t.render(), "A     LONG HEADER  C\nxxxx  y\n");
    }

    #[test]
    fn boxed_like_calicoctl() {
        let mut t = Table::new(&["PEER ADDRESS", "PEER TYPE", "STATE", "SINCE", "INFO"]);
        t.row(vec![
            "172.17.8.102".into(),
            "node-to-node mesh".into(),
            "up".into(),
            "23:30:04".into(),
            "Established".into(),
        ]);
        let want = "\
+--------------+-------------------+-------+----------+-------------+
| PEER ADDRESS |     PEER TYPE     | STATE |  SINCE   |    INFO     |
+--------------+-------------------+-------+----------+-------------+
| 172.17.8.102 | node-to-node mesh | up    | 23:30:04 | Established |
+--------------+-------------------+-------+----------+-------------+
";
        assert_eq!(t.render_boxed(), want);
    }
}
