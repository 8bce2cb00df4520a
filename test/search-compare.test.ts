import { describe, expect, it } from 'vitest';
import { searchHitsOf } from '../bench/public-inbox.ts';

// The end of public-inbox 1.9's search pages, as its httpd serves them (bench/search-compare.ts).
const many = `</pre><hr><pre id=t>Results 1-200 of ~1630  <a
href="?q=replication&amp;o=200"
rel=next>next (older)</a> | <a
href="?q=replication&amp;o=-1">reverse</a> | sort options + mbox downloads <a href=#d>above</a></pre><hr>`;
const few = `</pre><hr><pre id=t>Results 1-3 of 3 | <a
href="?q=%22fewi+rirotacor%22&amp;o=-1">reverse</a> | sort options + mbox downloads <a href=#d>above</a></pre><hr>`;
const none = `<a
href="?q=zzqqnotaword&amp;x=A">Atom feed</a></pre></form><hr><pre>This is a public inbox, see <a
href="_/text/mirror/">mirroring instructions</a>`;

describe('public-inbox search pages, read by the search bench', () => {
  it('reads the count of matches, estimated or exact, and none where there is no count', () => {
    expect(searchHitsOf(many)).toEqual({ hits: 1630, estimated: true });
    expect(searchHitsOf(few)).toEqual({ hits: 3, estimated: false });
    expect(searchHitsOf(none)).toEqual({ hits: 0, estimated: false });
  });
});

describe('npm run bench -- --scale SIZE', () => {
  it('reads sizes as people write them, and refuses what is not one', async () => {
    const { scaleMessages } = await import('../bench/scale.ts');
    expect(scaleMessages('1m')).toBe(1_000_000);
    expect(scaleMessages('250k')).toBe(250_000);
    expect(scaleMessages('1.5M')).toBe(1_500_000);
    expect(scaleMessages('50000')).toBe(50_000);
    expect(() => scaleMessages('lots')).toThrow(/--scale takes a number/);
    expect(() => scaleMessages('10')).toThrow(/at least 1,000/);
  });
});
