/**
 * A small SVG line chart of one or more series over time; gaps (null) break the line. The drawing
 * is as wide as its box in CSS pixels (measured), so its text is never stretched.
 */
import { useLayoutEffect, useRef, useState } from 'react';

export interface Series {
  name: string;
  color: string;
  values: (number | null)[];
}

export function LineChart({
  title,
  times,
  series,
  unit,
  max: fixedMax,
}: {
  title: string;
  times: string[];
  series: Series[];
  unit?: string;
  max?: number;
}) {
  const box = useRef<HTMLElement>(null);
  const [width, setWidth] = useState(560);
  useLayoutEffect(() => {
    const el = box.current;
    if (!el) return;
    const measure = () => setWidth(Math.max(200, Math.round(el.clientWidth - 24)));
    measure();
    const observer = new ResizeObserver(measure);
    observer.observe(el);
    return () => observer.disconnect();
  }, []);
  const height = 150;
  const pad = { left: 44, right: 8, top: 8, bottom: 20 };
  const all = series.flatMap((s) => s.values.filter((v): v is number => v !== null));
  const max = fixedMax ?? niceMax(Math.max(0, ...all));
  const n = times.length;
  const x = (i: number) => pad.left + (n <= 1 ? 0 : (i / (n - 1)) * (width - pad.left - pad.right));
  const y = (v: number) => pad.top + (1 - (max === 0 ? 0 : v / max)) * (height - pad.top - pad.bottom);
  // Seconds on the axis when the samples span less than ten minutes.
  const withSeconds = n > 1 && Date.parse(times[n - 1] ?? '') - Date.parse(times[0] ?? '') < 600_000;
  const latest = series.map((s) => [...s.values].reverse().find((v) => v !== null) ?? null);
  return (
    <figure className="chart" ref={box}>
      <figcaption>
        <span>{title}</span>
        <span className="legend">
          {series.map((s, i) => (
            <span key={s.name}>
              <i style={{ background: s.color }} /> {s.name}: <b>{format(latest[i] ?? null, unit)}</b>
            </span>
          ))}
        </span>
      </figcaption>
      {n === 0 ? (
        <div className="state empty">No samples yet: the bus takes one every few seconds.</div>
      ) : (
        <svg viewBox={`0 0 ${width} ${height}`} width={width} height={height} role="img" aria-label={title}>
          {[0, 0.5, 1].map((f) => (
            <g key={f}>
              <line x1={pad.left} x2={width - pad.right} y1={y(max * f)} y2={y(max * f)} className="grid" />
              <text x={pad.left - 4} y={y(max * f) + 4} textAnchor="end" className="axis">
                {format(max * f, unit)}
              </text>
            </g>
          ))}
          <text x={pad.left} y={height - 4} className="axis">
            {shortTime(times[0], withSeconds)}
          </text>
          <text x={width - pad.right} y={height - 4} textAnchor="end" className="axis">
            {shortTime(times[n - 1], withSeconds)}
          </text>
          {series.map((s) => (
            <g key={s.name}>
              <path d={path(s.values, x, y)} fill="none" stroke={s.color} strokeWidth={1.8} />
              {/* A value between two gaps has no line to draw: a dot shows it. */}
              {s.values.map((v, i) =>
                v !== null && (s.values[i - 1] ?? null) === null && (s.values[i + 1] ?? null) === null ? (
                  <circle key={i} cx={x(i)} cy={y(v)} r={2.5} fill={s.color} />
                ) : null,
              )}
            </g>
          ))}
        </svg>
      )}
    </figure>
  );
}

function path(values: (number | null)[], x: (i: number) => number, y: (v: number) => number): string {
  let d = '';
  let open = false;
  values.forEach((v, i) => {
    if (v === null) {
      open = false;
      return;
    }
    d += `${open ? 'L' : 'M'}${x(i).toFixed(1)},${y(v).toFixed(1)}`;
    open = true;
  });
  return d;
}

function niceMax(v: number): number {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

function format(v: number | null, unit?: string): string {
  if (v === null) return '–';
  if (unit === '%') return `${(v * 100).toFixed(v === 1 || v === 0 ? 0 : 1)} %`;
  const s = Math.abs(v) >= 1000 ? `${(v / 1000).toFixed(1)}k` : Number.isInteger(v) ? String(v) : v.toFixed(1);
  return unit ? `${s} ${unit}` : s;
}

function shortTime(t: string | undefined, withSeconds: boolean): string {
  if (!t) return '';
  const d = new Date(t);
  return Number.isNaN(d.getTime())
    ? t
    : d.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit', ...(withSeconds ? { second: '2-digit' } : {}) });
}
