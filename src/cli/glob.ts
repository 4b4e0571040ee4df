/**
 * Glob patterns in Strata path arguments, expanded against the namespace the way a
 * shell with `failglob` expands them against a local disk: one path component at a
 * time, with `*`, `?`, `[abc]`, `[a-z]`, `[!x]` (also `[^x]`). A backslash makes the
 * next `*`, `?`, `[`, `]` or `\` literal; any other backslash is itself. As in a
 * shell, a name's leading `.` is matched only by a literal `.`, and `**` is just `*`
 * (it never crosses a `/`).
 */

/** One piece of a parsed component. */
type Token =
  | { kind: 'literal'; ch: string }
  | { kind: 'any' }
  | { kind: 'star' }
  | { kind: 'class'; negate: boolean; ranges: [number, number][] };

const ESCAPABLE = new Set(['*', '?', '[', ']', '\\']);

/** A pattern for one path component (no `/`), parsed once and matched many times. */
export interface ComponentPattern {
  /** False when every token is literal: the component names one entry. */
  readonly glob: boolean;
  /** The name with escapes removed (meaningful when `glob` is false). */
  readonly literal: string;
  matches(name: string): boolean;
}

/** Reads a bracket expression starting after `[`; undefined when it is not closed (then `[` is literal). */
function parseClass(chars: string[], start: number): { token: Token; end: number } | undefined {
  let j = start;
  let negate = false;
  if (chars[j] === '!' || chars[j] === '^') {
    negate = true;
    j++;
  }
  const ranges: [number, number][] = [];
  const first = j;
  const take = (): string | undefined => {
    const c = chars[j];
    if (c === '\\' && j + 1 < chars.length) {
      j += 2;
      return chars[j - 1];
    }
    j++;
    return c;
  };
  for (;;) {
    if (j >= chars.length) return undefined;
    // A `]` right after `[` or `[!` is a member, not the end.
    if (chars[j] === ']' && j > first) return { token: { kind: 'class', negate, ranges }, end: j + 1 };
    const lo = take()!;
    if (chars[j] === '-' && j + 1 < chars.length && chars[j + 1] !== ']') {
      j++;
      const hi = take()!;
      ranges.push([lo.codePointAt(0)!, hi.codePointAt(0)!]);
    } else {
      ranges.push([lo.codePointAt(0)!, lo.codePointAt(0)!]);
    }
  }
}

function tokenize(component: string): Token[] {
  const chars = Array.from(component);
  const tokens: Token[] = [];
  for (let i = 0; i < chars.length; ) {
    const c = chars[i]!;
    if (c === '\\' && i + 1 < chars.length && ESCAPABLE.has(chars[i + 1]!)) {
      tokens.push({ kind: 'literal', ch: chars[i + 1]! });
      i += 2;
    } else if (c === '*') {
      if (tokens[tokens.length - 1]?.kind !== 'star') tokens.push({ kind: 'star' });
      i++;
    } else if (c === '?') {
      tokens.push({ kind: 'any' });
      i++;
    } else if (c === '[') {
      const cls = parseClass(chars, i + 1);
      if (cls) {
        tokens.push(cls.token);
        i = cls.end;
      } else {
        tokens.push({ kind: 'literal', ch: c });
        i++;
      }
    } else {
      tokens.push({ kind: 'literal', ch: c });
      i++;
    }
  }
  return tokens;
}

function matchOne(t: Token, c: string): boolean {
  switch (t.kind) {
    case 'literal':
      return t.ch === c;
    case 'any':
      return true;
    case 'star':
      return false;
    case 'class': {
      const cp = c.codePointAt(0)!;
      return t.ranges.some(([lo, hi]) => cp >= lo && cp <= hi) !== t.negate;
    }
  }
}

/** Matches characters against tokens; a `*` that fails to extend backtracks to the last one only, which is enough without `**`. */
function matchTokens(tokens: Token[], chars: string[]): boolean {
  let t = 0;
  let s = 0;
  let starT = -1;
  let starS = 0;
  while (s < chars.length) {
    const tok = tokens[t];
    if (tok?.kind === 'star') {
      starT = t++;
      starS = s;
    } else if (tok && matchOne(tok, chars[s]!)) {
      t++;
      s++;
    } else if (starT >= 0) {
      t = starT + 1;
      s = ++starS;
    } else {
      return false;
    }
  }
  while (tokens[t]?.kind === 'star') t++;
  return t === tokens.length;
}

/** Parses one path component. */
export function compileComponent(component: string): ComponentPattern {
  const tokens = tokenize(component);
  const glob = tokens.some((t) => t.kind !== 'literal');
  const literal = tokens.map((t) => (t.kind === 'literal' ? t.ch : '')).join('');
  const dotExplicit = tokens[0]?.kind === 'literal' && tokens[0].ch === '.';
  return {
    glob,
    literal,
    matches(name: string): boolean {
      if (!glob) return name === literal;
      if (name.startsWith('.') && !dotExplicit) return false;
      return matchTokens(tokens, Array.from(name));
    },
  };
}

/** Whether `name` matches the one-component `pattern`. */
export function matchGlob(pattern: string, name: string): boolean {
  return compileComponent(pattern).matches(name);
}

/** Whether a path argument holds an unescaped `*`, `?` or `[…]` and so names a pattern. */
export function hasGlob(path: string): boolean {
  return path.split('/').some((c) => compileComponent(c).glob);
}

/** A path argument without patterns, its escapes removed: `/a\*b` is the file `/a*b`. */
export function unescapeGlob(path: string): string {
  return path
    .split('/')
    .map((c) => compileComponent(c).literal)
    .join('/');
}

/** The part of an absolute pattern before its first pattern component, escapes removed: `/data/day=*` -> `/data`. */
export function literalPrefix(pattern: string): string {
  const components = pattern
    .split('/')
    .filter((c) => c.length > 0)
    .map(compileComponent);
  const firstGlob = components.findIndex((c) => c.glob);
  return '/' + components.slice(0, firstGlob < 0 ? components.length : firstGlob).map((c) => c.literal).join('/');
}

/** An entry of a directory listing, as much as expansion needs. */
export interface GlobEntry {
  name: string;
  type: string;
}

/** Lists a directory; undefined when it is missing or not a directory (then it holds no matches). */
export type GlobLister = (dir: string) => Promise<GlobEntry[] | undefined>;

/** Whether a path argument ends in `/` (and is not just `/`): then it names a directory, as in a shell and rm(1). */
export function namesDirectory(path: string): boolean {
  return path.length > 1 && path.endsWith('/');
}

/**
 * The absolute paths matching an absolute `pattern`, sorted per component, found by
 * listing each candidate parent with `list`. Components before the first pattern are
 * taken as they are; every later component must exist, as in a shell. A pattern
 * ending in `/` (`/data/day=?/`) matches directories only. [] when nothing matches.
 */
export async function expandGlob(pattern: string, list: GlobLister): Promise<string[]> {
  // Splitting drops the empty component after a trailing `/`; what it said is kept here.
  const directoriesOnly = namesDirectory(pattern);
  const components = pattern
    .split('/')
    .filter((c) => c.length > 0)
    .map(compileComponent);
  const firstGlob = components.findIndex((c) => c.glob);
  const join = (dir: string, name: string) => (dir === '/' ? `/${name}` : `${dir}/${name}`);
  let current = [literalPrefix(pattern)];
  if (firstGlob < 0) return current;
  for (let i = firstGlob; i < components.length; i++) {
    const comp = components[i]!;
    const last = i === components.length - 1;
    const next: string[] = [];
    for (const dir of current) {
      const entries = await list(dir);
      if (!entries) continue;
      const names = entries
        .filter((e) => (last ? !directoriesOnly || e.type === 'directory' : e.type === 'directory' || e.type === 'symlink') && comp.matches(e.name))
        .map((e) => e.name)
        .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
      for (const name of names) next.push(join(dir, name));
    }
    current = next;
    if (current.length === 0) break;
  }
  return current;
}
