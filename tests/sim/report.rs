//! What a run says: the table (markdown) and the plot (SVG, `plotters`).

use super::run::Tally;
use super::scenario::Scenario;
use plotters::prelude::*;
use std::fmt::Write;
use std::path::Path;

/// The markdown table of `tallies` for `scenario`.
pub fn table(scenario: &Scenario, tallies: &[Tally]) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "{} listeners, {} relays with {} slots in all, seed {}, {} s simulated.\n",
        scenario.listeners.len(),
        scenario.relays.len(),
        scenario.slots(),
        scenario.seed,
        scenario.duration / 1_000_000
    );
    let _ = writeln!(
        t,
        "| balancer | admitted | refused while room was free | refused, no room | overfill (sent to a full relay) | sent to a dead relay | ... up to (s after it died) | gave up | peak utilisation |"
    );
    let _ = writeln!(t, "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in tallies {
        let _ = writeln!(
            t,
            "| {} | {} ({:.1} %) | {} | {} | {} | {} | {:.1} | {} | {:.1} % |",
            r.name,
            r.admitted,
            100.0 * r.admitted as f64 / r.listeners.max(1) as f64,
            r.refused_while_free,
            r.refused_full,
            r.overfill,
            r.sent_dead,
            r.dead_for,
            r.gave_up,
            100.0 * r.peak_utilisation
        );
    }
    t
}

/// One color per balancer in the overfill/refusal panel.
const LINE_COLORS: [RGBColor; 5] = [
    RGBColor(214, 39, 40),
    RGBColor(255, 127, 14),
    RGBColor(31, 119, 180),
    RGBColor(148, 103, 189),
    RGBColor(44, 160, 44),
];

/// One panel: listeners (0 to `top`) over seconds (0 to `end`).
fn panel<'a, 'b>(
    area: &'a DrawingArea<SVGBackend<'b>, plotters::coord::Shift>,
    caption: &str,
    end: f64,
    top: f64,
) -> Result<
    ChartContext<
        'a,
        SVGBackend<'b>,
        Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
    >,
    Box<dyn std::error::Error>,
> {
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..end, 0.0..top * 1.05)?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc("listeners")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()?;
    Ok(chart)
}

/// Writes the plot to `path`: listeners per relay over time under the
/// first and the last of `per_relay` (indices into `tallies`), and the
/// overfill and refusals-while-room-was-free of every balancer over time.
pub fn plot(
    path: &Path,
    scenario: &Scenario,
    tallies: &[Tally],
    per_relay: &[usize],
) -> Result<(), Box<dyn std::error::Error>> {
    let panels = per_relay.len() + 1;
    // At most about 150 points per line: the file stays small enough to
    // read in a browser and to keep in git.
    let every = |t: &Tally| (t.series.len() / 150).max(1);
    let root = SVGBackend::new(path, (960, 320 * panels as u32)).into_drawing_area();
    root.fill(&WHITE)?;
    let areas = root.split_evenly((panels, 1));
    let end = scenario.duration as f64 / 1e6;
    for (area, &i) in areas.iter().zip(per_relay) {
        let tally = &tallies[i];
        let top = tally
            .series
            .iter()
            .flat_map(|s| s.per_relay.iter().copied())
            .max()
            .unwrap_or(1)
            .max(1) as f64;
        let caption = format!("{}: listeners per relay", tally.name);
        let mut chart = panel(area, &caption, end, top)?;
        for r in 0..scenario.relays.len() {
            let color = Palette99::pick(r).mix(0.8);
            chart.draw_series(LineSeries::new(
                tally
                    .series
                    .iter()
                    .step_by(every(tally))
                    .map(|s| (s.at, f64::from(s.per_relay[r]))),
                color.stroke_width(1),
            ))?;
        }
    }
    let area = &areas[panels - 1];
    let top = tallies
        .iter()
        .flat_map(|t| {
            t.series
                .iter()
                .map(|s| s.overfill.max(s.refused_while_free))
        })
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let caption = "overfill (solid) and refused while room was free (dashed), cumulative";
    let mut chart = panel(area, caption, end, top)?;
    for (i, t) in tallies.iter().enumerate() {
        let color = LINE_COLORS[i % LINE_COLORS.len()].to_rgba();
        chart
            .draw_series(LineSeries::new(
                t.series
                    .iter()
                    .step_by(every(t))
                    .map(|s| (s.at, s.overfill as f64)),
                color.stroke_width(2),
            ))?
            .label(t.name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        chart.draw_series(DashedLineSeries::new(
            t.series
                .iter()
                .step_by(every(t))
                .map(|s| (s.at, s.refused_while_free as f64)),
            6,
            4,
            color.stroke_width(2),
        ))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()?;
    root.present()?;
    Ok(())
}
