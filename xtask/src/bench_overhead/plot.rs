//! The ratio table as a PNG: one group of horizontal bars per workload (one bar per
//! configuration: detector, detector-reads, floor, auditd, bpftrace), median ratio against no
//! agent with min–max whiskers, a line at 1.00.
//!
//! Text is drawn through plotters' ab_glyph backend from a TTF file read at run time, so no
//! fontconfig or system font lookup is involved.

use std::{collections::BTreeMap, path::Path};

use anyhow::{Context as _, Result};
use plotters::{prelude::*, style::FontStyle};

use super::{Config, Row, Stat};

const BARS: [(Config, RGBColor); 5] = [
    (Config::Detector, RGBColor(31, 119, 180)),
    (Config::DetectorReads, RGBColor(44, 160, 44)),
    (Config::Floor, RGBColor(127, 127, 127)),
    (Config::Auditd, RGBColor(214, 39, 40)),
    (Config::Bpftrace, RGBColor(255, 127, 14)),
];

/// Draws the plot of `stats` for `rows` into `path` (PNG).
pub fn draw(
    path: &Path,
    font: &str,
    rows: &[Row],
    stats: &BTreeMap<(String, Config), Stat>,
) -> Result<()> {
    let bytes = std::fs::read(font).with_context(|| format!("reading the plot font {font}"))?;
    plotters::style::register_font("sans-serif", FontStyle::Normal, Box::leak(bytes.into()))
        .map_err(|_| anyhow::anyhow!("{font}: not a usable TrueType font"))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let n = rows.len().max(1);
    // One band per workload, one 22-px bar per configuration plus a gap.
    let height = 140 + (22 * BARS.len() as u32 + 24) * n as u32;
    let root = BitMapBackend::new(path, (1400, height)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    // Fixed, so the legend (lower right, beyond 1.6) covers no bar a real cost can draw;
    // ratios above (noise) are clipped at the edge.
    let x_max = 2.35;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Workload throughput vs no agent (1.00 = no cost; bar = median, whisker = min–max)",
            ("sans-serif", 24),
        )
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(330)
        .build_cartesian_2d(0f64..x_max, 0f64..n as f64)
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .y_labels(0)
        .disable_y_mesh()
        .light_line_style(WHITE)
        .x_desc("ratio")
        .label_style(("sans-serif", 16))
        .draw()
        .map_err(plot_err)?;
    for (i, row) in rows.iter().enumerate() {
        // First row at the top.
        let base = (n - 1 - i) as f64;
        let (px, py) = chart.backend_coord(&(0.0, base + 0.5));
        root.draw(&Text::new(
            row.title,
            (px - 320, py - 8),
            ("sans-serif", 16).into_font(),
        ))
        .map_err(plot_err)?;
    }
    for (k, (config, color)) in BARS.iter().enumerate() {
        let mut bars = Vec::new();
        let mut whiskers = Vec::new();
        let mut labels = Vec::new();
        for (i, row) in rows.iter().enumerate() {
            let Some((m, lo, hi)) = stats
                .get(&(row.key.to_string(), *config))
                .and_then(|s| s.ratio)
            else {
                continue;
            };
            // The band [base, base + 1): bars from the top, 0.9 of it shared between them.
            let slot = 0.9 / BARS.len() as f64;
            let y0 = (n - 1 - i) as f64 + 0.95 - slot * k as f64;
            let y1 = y0 - slot * 0.85;
            let yc = (y0 + y1) / 2.0;
            bars.push(Rectangle::new(
                [(0.0, y1), (m.min(x_max), y0)],
                color.filled(),
            ));
            whiskers.push(PathElement::new(
                vec![(lo.min(x_max), yc), (hi.min(x_max), yc)],
                BLACK.stroke_width(2),
            ));
            labels.push(Text::new(
                format!("{m:.2}"),
                ((hi.max(m) + 0.01).min(x_max - 0.1), y0),
                ("sans-serif", 13).into_font(),
            ));
        }
        chart
            .draw_series(bars)
            .map_err(plot_err)?
            .label(config_label(*config))
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], color.filled()));
        chart.draw_series(whiskers).map_err(plot_err)?;
        chart.draw_series(labels).map_err(plot_err)?;
    }
    chart
        .draw_series(std::iter::once(PathElement::new(
            vec![(1.0, 0.0), (1.0, n as f64)],
            BLACK.stroke_width(1),
        )))
        .map_err(plot_err)?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font(("sans-serif", 16))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(plot_err)?;
    root.present().map_err(plot_err)?;
    Ok(())
}

fn config_label(c: Config) -> &'static str {
    match c {
        Config::Detector => "detector run",
        Config::DetectorReads => "detector run --hooks process,net,reads",
        Config::Floor => "floor: empty programs on our hooks",
        Config::Auditd => "auditd (equivalent rules)",
        Config::Bpftrace => "bpftrace (same tracepoints, print all)",
        Config::None => "no agent",
    }
}

fn plot_err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow::anyhow!("drawing the plot: {e:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_a_png() {
        let font = super::super::FONT.0;
        if !Path::new(font).exists() {
            panic!("{font} missing: cargo xtask bench overhead installs fonts-dejavu-core");
        }
        let rows = &super::super::ROWS[..2];
        let mut stats = BTreeMap::new();
        for (k, c) in [
            Config::Detector,
            Config::DetectorReads,
            Config::Floor,
            Config::Auditd,
            Config::Bpftrace,
        ]
        .into_iter()
        .enumerate()
        {
            for r in rows {
                stats.insert(
                    (r.key.to_string(), c),
                    Stat {
                        ratio: Some((0.9 - 0.2 * k as f64, 0.5, 1.0)),
                        ..Default::default()
                    },
                );
            }
        }
        let path = std::env::temp_dir().join(format!("overhead-plot-{}.png", std::process::id()));
        draw(&path, font, rows, &stats).expect("draw");
        let png = std::fs::read(&path).expect("png");
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert!(png.len() > 5_000, "{} bytes", png.len());
        let _ = std::fs::remove_file(&path);
    }
}
