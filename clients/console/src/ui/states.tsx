/** Loading, empty and error states, the same on every view. */
import { NetworkError, ProblemError } from '@situs/event-bus-client';
import { Component, useState, type ReactNode } from 'react';
import type { Resource } from '../api';

export function Loading({ what = 'Loading' }: { what?: string }) {
  return (
    <div className="state loading" role="status" aria-live="polite">
      <span className="spinner" aria-hidden="true" /> {what}…
    </div>
  );
}

export function Empty({ children }: { children: ReactNode }) {
  return <div className="state empty">{children}</div>;
}

/** An error as a reader can act on it: a refused key, a refused view, a problem's detail. */
export function ErrorBox({ error, onRetry, note }: { error: unknown; onRetry?: () => void; note?: string }) {
  let title = 'Something went wrong';
  let detail: ReactNode = error instanceof Error ? error.message : String(error);
  let kind = 'error';
  if (error instanceof ProblemError) {
    if (error.status === 401) {
      title = 'This key is not accepted';
      detail = 'The bus did not accept the API key (revoked, expired or mistyped). Sign out and sign in with a valid key.';
      kind = 'refused';
    } else if (error.status === 403) {
      title = 'This key may not see this';
      detail = error.detail ?? 'The API refused this view to the signed-in key.';
      kind = 'refused';
    } else {
      title = `${error.status} ${error.title}`;
      detail = (
        <>
          {error.detail}
          {error.errors.length > 0 && (
            <ul>
              {error.errors.map((e, i) => (
                <li key={i}>
                  <code>{e.field}</code>: {e.message}
                </li>
              ))}
            </ul>
          )}
        </>
      );
    }
  } else if (error instanceof NetworkError) {
    title = 'The bus cannot be reached';
  }
  return (
    <div className={`state ${kind}`} role="alert" data-status={error instanceof ProblemError ? error.status : undefined}>
      <strong>{title}</strong>
      <div>{detail}</div>
      {note && <div className="small">{note}</div>}
      {onRetry && (
        <button type="button" onClick={onRetry}>
          Try again
        </button>
      )}
    </div>
  );
}

/**
 * A loaded resource's states in one place: its error (kept stale data wins over a failed refresh),
 * loading, empty (`isEmpty`), or `children` with the data.
 */
export function Loaded<T>({
  resource,
  isEmpty,
  empty,
  loading,
  children,
}: {
  resource: Resource<T>;
  isEmpty?: (data: T) => boolean;
  empty?: ReactNode;
  loading?: string;
  children: (data: T) => ReactNode;
}) {
  const { data, error, reload } = resource;
  if (error !== undefined && data === undefined) return <ErrorBox error={error} onRetry={reload} />;
  if (data === undefined) return <Loading {...(loading ? { what: loading } : {})} />;
  // A refresh that failed (a revoked key, the bus gone) is said above the last data read.
  const stale = error !== undefined && <ErrorBox error={error} onRetry={reload} note="The figures below are the last ones read." />;
  if (isEmpty?.(data)) {
    return (
      <>
        {stale}
        <Empty>{empty}</Empty>
      </>
    );
  }
  return (
    <>
      {stale}
      {children(data)}
    </>
  );
}

/**
 * Catches what a view throws while rendering, so one view's failure is a message in its place,
 * not a blank page; the frame keys it by view, so moving to another view starts afresh.
 */
export class ViewBoundary extends Component<{ children: ReactNode }, { error: unknown }> {
  override state: { error: unknown } = { error: undefined };

  static getDerivedStateFromError(error: unknown) {
    return { error };
  }

  override render() {
    if (this.state.error !== undefined) {
      return <ErrorBox error={this.state.error} onRetry={() => this.setState({ error: undefined })} note="This view failed to draw." />;
    }
    return this.props.children;
  }
}

/** A JSON value, indented. */
export function Json({ value }: { value: unknown }) {
  return <pre className="json">{JSON.stringify(value, null, 2)}</pre>;
}

/** A time as the reader's local date and time, with the exact value on hover. */
export function Time({ value }: { value: string | null | undefined }) {
  if (!value) return <span className="muted">–</span>;
  const date = new Date(value);
  return (
    <time dateTime={value} title={value}>
      {Number.isNaN(date.getTime()) ? value : date.toLocaleString(undefined, { dateStyle: 'short', timeStyle: 'medium' })}
    </time>
  );
}

/** Keyset pages: the `after` of the page shown, and the cursors seen so far as a stack for going back. */
export interface Pages {
  after: number | undefined;
  page: number;
  next: (nextAfter: number) => void;
  previous: () => void;
  /** Back to the first page (new filters). */
  reset: () => void;
}

export function usePages(): Pages {
  const [cursors, setCursors] = useState<(number | undefined)[]>([undefined]);
  return {
    after: cursors[cursors.length - 1],
    page: cursors.length - 1,
    next: (nextAfter) => setCursors((c) => [...c, nextAfter]),
    previous: () => setCursors((c) => (c.length > 1 ? c.slice(0, -1) : c)),
    reset: () => setCursors([undefined]),
  };
}

/** Previous / next over keyset pages; `nextAfter` is the answer's (null on the last page). */
export function Pager({ pages, nextAfter }: { pages: Pages; nextAfter: number | null | undefined }) {
  return (
    <nav className="pager" aria-label="pages">
      <button type="button" onClick={pages.previous} disabled={pages.page === 0}>
        ← Previous
      </button>
      <span>Page {pages.page + 1}</span>
      <button type="button" onClick={() => nextAfter != null && pages.next(nextAfter)} disabled={nextAfter == null}>
        Next →
      </button>
    </nav>
  );
}
