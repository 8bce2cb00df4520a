/*
 * What an HTML part would cost htmlparser2, the parser under mailparser's HTML-to-text and under
 * sanitize-html, told before either is asked. Its parser keeps the open elements in an array that
 * it shifts at every tag and searches at every end tag, so each tag costs the depth it meets
 * (htmlparser2 10.1; upstream PR #2481, still open, makes it linear): 50,000 nested <div>s
 * (250 KB) took 3 s to parse and 6.5 s to sanitise, and a 2.2 MB message held the ingest's event
 * loop for 52 s. Here the same tokenizer reads the tags, in linear time, and a stack kept as the
 * parser keeps it, but pushed and popped at its end, counts that cost. Browsers stop nesting at
 * 512; mail that is meant to be read is a few dozen deep. Pure.
 */

import { Tokenizer } from 'htmlparser2';

/** Tags times the depth each meets, past which a part is not parsed: about 50 ms of htmlparser2. */
export const HTML_WORK_LIMIT = 50_000_000;

// As htmlparser2 (Parser.ts) has them: elements without an end, and the open elements a start tag
// closes. One left out here would only make this stack deeper than the parser's, never shallower.
const VOID = new Set(['area', 'base', 'basefont', 'br', 'col', 'command', 'embed', 'frame', 'hr', 'img', 'input', 'isindex', 'keygen', 'link', 'meta', 'param', 'source', 'track', 'wbr']);
const P = new Set(['p']);
const FORM = new Set(['input', 'option', 'optgroup', 'select', 'button', 'datalist', 'textarea']);
const IMPLIES_CLOSE = new Map<string, Set<string>>([
  ['tr', new Set(['tr', 'th', 'td'])], ['th', new Set(['th'])], ['td', new Set(['thead', 'th', 'td'])], ['body', new Set(['head', 'link', 'script'])],
  ['li', new Set(['li'])], ['option', new Set(['option'])], ['optgroup', new Set(['optgroup', 'option'])], ['dd', new Set(['dd', 'dt'])],
  ['dt', new Set(['dd', 'dt'])], ['rt', new Set(['rt', 'rp'])], ['rp', new Set(['rt', 'rp'])], ['tbody', new Set(['thead', 'tbody'])],
  ['tfoot', new Set(['thead', 'tbody'])],
  ...['select', 'input', 'output', 'button', 'datalist', 'textarea'].map((t): [string, Set<string>] => [t, FORM]),
  ...['p', 'h1', 'h2', 'h3', 'h4', 'h5', 'h6', 'address', 'article', 'aside', 'blockquote', 'details', 'div', 'dl', 'fieldset', 'figcaption',
    'figure', 'footer', 'form', 'header', 'hr', 'main', 'nav', 'ol', 'pre', 'section', 'table', 'ul'].map((t): [string, Set<string>] => [t, P]),
]);

// Inside SVG and MathML a self-closing tag closes (as the parser's foreignContext tells).
const FOREIGN = new Set(['math', 'svg']);
const INTEGRATION = new Set(['mi', 'mo', 'mn', 'ms', 'mtext', 'annotation-xml', 'foreignobject', 'desc', 'title']);

const ignore = () => {};

/**
 * The sum, over the start and end tags of `html`, of the number of elements the parser has open
 * when it meets each: the work htmlparser2 does for them. Counting stops a little past `limit`.
 */
export function htmlParseWork(html: string, limit = HTML_WORK_LIMIT): number {
  const stack: string[] = [];
  const open = new Map<string, number>();
  const foreign: boolean[] = [];
  let current = '';
  let work = 0;
  const pop = () => {
    const name = stack.pop()!;
    open.set(name, open.get(name)! - 1);
  };
  const name = (start: number, end: number) => html.slice(start, end).toLowerCase();
  const count = () => {
    work += stack.length;
    if (work > limit) tokenizer.pause();
  };
  const tokenizer = new Tokenizer({ xmlMode: false, decodeEntities: false }, {
    onopentagname(start, end) {
      count();
      const tag = name(start, end);
      current = tag;
      const closes = IMPLIES_CLOSE.get(tag);
      while (closes && stack.length > 0 && closes.has(stack[stack.length - 1])) pop();
      if (VOID.has(tag)) return;
      stack.push(tag);
      open.set(tag, (open.get(tag) ?? 0) + 1);
      if (FOREIGN.has(tag)) foreign.push(true);
      else if (INTEGRATION.has(tag)) foreign.push(false);
    },
    onclosetag(start, end) {
      count();
      // An end tag closes its element and every one opened inside it; one that is not open, nothing.
      const tag = name(start, end);
      if (FOREIGN.has(tag) || INTEGRATION.has(tag)) foreign.pop();
      if (VOID.has(tag) || !open.get(tag)) return;
      while (stack[stack.length - 1] !== tag) pop();
      pop();
    },
    // "<div/>" stays open in HTML; inside SVG and MathML it closes.
    onselfclosingtag() {
      if (foreign[foreign.length - 1] && stack[stack.length - 1] === current) pop();
    },
    onopentagend: ignore, onattribdata: ignore, onattribentity: ignore, onattribend: ignore, onattribname: ignore,
    oncdata: ignore, oncomment: ignore, ondeclaration: ignore, onend: ignore, onprocessinginstruction: ignore, ontext: ignore, ontextentity: ignore,
  });
  tokenizer.write(html);
  if (work <= limit) tokenizer.end();
  return work;
}

/** Whether parsing `html` would cost more than HTML_WORK_LIMIT. */
export function htmlTooCostly(html: string): boolean {
  return htmlParseWork(html) > HTML_WORK_LIMIT;
}
