/**
 * Hand-written SVG charts (no dependencies): horizontal bars for one workload's subjects, and
 * panels of line charts for the testbed time series. Pure functions returning the SVG text.
 */
import type { Row, Series } from './results';
import { fmt } from './results';

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
const FONT = 'font-family="system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif"';
const KIND_COLOUR: Record<Row['kind'], string> = { limit: '#8c8c8c', ours: '#1f6fd1', peer: '#e07b24', info: '#9bbfe8' };
const LINE_COLOURS = ['#1f6fd1', '#e07b24', '#2a9d4b', '#b03a8c', '#7a5c2e', '#5a5a5a', '#d13a3a', '#16a3a3'];

/** A "nice" axis maximum (1, 2, 2.5 or 5 × a power of ten) at or above v. */
export function niceMax(v: number): number {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function text(x: number, y: number, s: string, attrs = ''): string {
  return `<text x="${x.toFixed(1)}" y="${y.toFixed(1)}" ${attrs}>${esc(s)}</text>`;
}

/** Horizontal bars, one per row; rows without a value show why. */
export function barChart(title: string, rows: readonly Row[], opts: { ratioLabel?: (r: Row) => string } = {}): string {
  const labelW = 260;
  const barW = 420;
  const rowH = 24;
  const top = 40;
  const w = labelW + barW + 150;
  const h = top + rows.length * rowH + 30;
  const max = niceMax(Math.max(0, ...rows.map((r) => r.value ?? 0)));
  const unit = rows[0]?.unit ?? '';
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}" viewBox="0 0 ${w} ${h}" ${FONT} font-size="12">`,
    `<rect width="100%" height="100%" fill="#ffffff"/>`,
    text(10, 22, title, 'font-size="15" font-weight="600"'),
  ];
  for (let i = 0; i <= 4; i++) {
    const x = labelW + (barW * i) / 4;
    parts.push(`<line x1="${x}" y1="${top - 6}" x2="${x}" y2="${top + rows.length * rowH}" stroke="#e6e6e6"/>`);
    parts.push(text(x, h - 12, fmt((max * i) / 4), 'text-anchor="middle" fill="#555"'));
  }
  parts.push(text(labelW + barW + 28, h - 12, unit, 'fill="#555"'));
  rows.forEach((r, i) => {
    const y = top + i * rowH;
    parts.push(text(labelW - 8, y + 15, r.label, 'text-anchor="end"'));
    if (r.value === null) {
      parts.push(text(labelW + 4, y + 15, `not measured${r.note ? `: ${r.note.slice(0, 60)}` : ''}`, 'fill="#999" font-style="italic"'));
      return;
    }
    const len = Math.max(1, (barW * r.value) / max);
    parts.push(`<rect x="${labelW}" y="${y + 4}" width="${len.toFixed(1)}" height="${rowH - 8}" fill="${KIND_COLOUR[r.kind]}"/>`);
    const extra = opts.ratioLabel?.(r) ?? '';
    parts.push(text(labelW + len + 6, y + 15, `${fmt(r.value)}${extra ? `  ${extra}` : ''}`, 'fill="#222"'));
  });
  parts.push('</svg>');
  return parts.join('\n');
}

export interface Panel {
  title: string;
  series: Series | undefined;
}

/**
 * Side-by-side line charts sharing one y scale (so panels compare at a glance), or with
 * `ownScale` each its own (panels of different quantities; the unit then goes in each title);
 * `xMax` fixes the x axis (e.g. at a run's planned length).
 */
export function linePanels(title: string, unit: string, panels: readonly Panel[], opts: { ownScale?: boolean; xLabel?: string; xMax?: number } = {}): string {
  const pw = 320;
  const ph = 200;
  const left = 50;
  const top = 50;
  const gap = opts.ownScale ? 60 : 30;
  const w = left + panels.length * (pw + gap) + 10;
  const h = top + ph + 70;
  const maxOf = (ps: readonly Panel[]): number => niceMax(Math.max(1, ...ps.flatMap((p) => (p.series ? Object.values(p.series.lines).flat() : []))));
  const shared = maxOf(panels);
  const tMax = opts.xMax ?? niceMax(Math.max(1, ...panels.flatMap((p) => p.series?.t ?? [])));
  const names = [...new Set(panels.flatMap((p) => (p.series ? Object.keys(p.series.lines) : [])))];
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}" viewBox="0 0 ${w} ${h}" ${FONT} font-size="12">`,
    `<rect width="100%" height="100%" fill="#ffffff"/>`,
    text(10, 22, title, 'font-size="15" font-weight="600"'),
  ];
  panels.forEach((p, i) => {
    const x0 = left + i * (pw + gap);
    const yMax = opts.ownScale ? maxOf([p]) : shared;
    parts.push(text(x0 + pw / 2, top - 10, p.title, 'text-anchor="middle" font-weight="600"'));
    parts.push(`<rect x="${x0}" y="${top}" width="${pw}" height="${ph}" fill="none" stroke="#bbb"/>`);
    for (let k = 0; k <= 4; k++) {
      const y = top + ph - (ph * k) / 4;
      parts.push(`<line x1="${x0}" y1="${y}" x2="${x0 + pw}" y2="${y}" stroke="#eee"/>`);
      if (i === 0 || opts.ownScale) parts.push(text(x0 - 6, y + 4, fmt((yMax * k) / 4), 'text-anchor="end" fill="#555"'));
    }
    for (let k = 0; k <= 4; k++) parts.push(text(x0 + (pw * k) / 4, top + ph + 16, fmt((tMax * k) / 4), 'text-anchor="middle" fill="#555"'));
    parts.push(text(x0 + pw / 2, top + ph + 32, opts.xLabel ?? 'seconds', 'text-anchor="middle" fill="#555"'));
    if (!p.series || p.series.t.length === 0) {
      parts.push(text(x0 + pw / 2, top + ph / 2, 'not measured', 'text-anchor="middle" fill="#999" font-style="italic"'));
      return;
    }
    const s = p.series;
    names.forEach((name, j) => {
      const ys = s.lines[name];
      if (!ys) return;
      const pts = ys.map((v, k) => `${(x0 + (pw * s.t[k]) / tMax).toFixed(1)},${(top + ph - (ph * Math.min(v, yMax)) / yMax).toFixed(1)}`);
      parts.push(`<polyline points="${pts.join(' ')}" fill="none" stroke="${LINE_COLOURS[j % LINE_COLOURS.length]}" stroke-width="2"/>`);
    });
  });
  parts.push(text(12, top + ph / 2, unit, `fill="#555" transform="rotate(-90 12 ${top + ph / 2})" text-anchor="middle"`));
  names.forEach((name, j) => {
    const x = left + j * 110;
    parts.push(`<line x1="${x}" y1="${h - 12}" x2="${x + 20}" y2="${h - 12}" stroke="${LINE_COLOURS[j % LINE_COLOURS.length]}" stroke-width="3"/>`);
    parts.push(text(x + 26, h - 8, name, ''));
  });
  parts.push('</svg>');
  return parts.join('\n');
}
