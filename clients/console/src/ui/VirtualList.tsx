/**
 * A list that renders only the rows in view (plus a few), whatever its length: rows have one
 * fixed height, so the position of row i is i × height and nothing needs measuring.
 */
import { useLayoutEffect, useRef, useState, type ReactNode } from 'react';

export function VirtualList<T>({
  items,
  rowHeight,
  height,
  render,
  itemKey,
  label,
}: {
  items: readonly T[];
  rowHeight: number;
  /** The height of the scrolling box, a CSS length. */
  height: string;
  render: (item: T, index: number) => ReactNode;
  itemKey: (item: T) => string | number;
  label: string;
}) {
  const box = useRef<HTMLDivElement>(null);
  const [scrollTop, setScrollTop] = useState(0);
  const [viewport, setViewport] = useState(600);
  useLayoutEffect(() => {
    const el = box.current;
    if (!el) return;
    const resize = () => setViewport(el.clientHeight);
    resize();
    const observer = new ResizeObserver(resize);
    observer.observe(el);
    return () => observer.disconnect();
  }, []);
  const overscan = 6;
  const first = Math.max(0, Math.floor(scrollTop / rowHeight) - overscan);
  const last = Math.min(items.length, Math.ceil((scrollTop + viewport) / rowHeight) + overscan);
  const rows: ReactNode[] = [];
  for (let i = first; i < last; i++) {
    const item = items[i] as T;
    rows.push(
      <div key={itemKey(item)} role="listitem" className="vrow" style={{ top: i * rowHeight, height: rowHeight }}>
        {render(item, i)}
      </div>,
    );
  }
  return (
    <div
      ref={box}
      className="vlist"
      role="list"
      aria-label={label}
      style={{ height }}
      onScroll={(e) => setScrollTop(e.currentTarget.scrollTop)}
    >
      <div style={{ height: items.length * rowHeight, position: 'relative' }}>{rows}</div>
    </div>
  );
}
