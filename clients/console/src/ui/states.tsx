/** Loading, empty and error states, the same on every view. */
import { NetworkError, ProblemError } from '@situs/event-bus-client';
import type { ReactNode } from 'react';

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
export function ErrorBox({ error, onRetry }: { error: unknown; onRetry?: () => void }) {
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
      {onRetry && (
        <button type="button" onClick={onRetry}>
          Try again
        </button>
      )}
    </div>
  );
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

/** Previous / next over keyset pages: the cursors seen so far are a stack. */
export function Pager({
  page,
  hasNext,
  onPrevious,
  onNext,
}: {
  page: number;
  hasNext: boolean;
  onPrevious: () => void;
  onNext: () => void;
}) {
  return (
    <nav className="pager" aria-label="pages">
      <button type="button" onClick={onPrevious} disabled={page === 0}>
        ← Previous
      </button>
      <span>Page {page + 1}</span>
      <button type="button" onClick={onNext} disabled={!hasNext}>
        Next →
      </button>
    </nav>
  );
}
