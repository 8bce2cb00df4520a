/*
 * Checks real API responses against the OpenAPI 3.1 document the server publishes: each
 * response's status must be documented for its operation, and its JSON body must validate
 * against that response's schema (JSON Schema 2020-12, by ajv; formats by ajv-formats).
 */

import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';
import type { ValidateFunction } from 'ajv';

// ajv-formats is CommonJS: its function is the default export's default under Node's ESM loader.
const addFormats = ((addFormatsModule as unknown as { default?: unknown }).default ?? addFormatsModule) as (ajv: Ajv2020) => void;

interface OpenApiDoc {
  paths: Record<string, Record<string, { responses: Record<string, { content?: Record<string, unknown> }> }>>;
}

// A JSON pointer in a URI fragment: each segment escaped (RFC 6901), then percent-encoded ({list}).
const pointer = (...parts: string[]) => parts.map((p) => encodeURIComponent(p.replace(/~/g, '~0').replace(/\//g, '~1'))).join('/');

export class OpenApiChecker {
  private ajv = new Ajv2020({ strict: false, allErrors: true });
  private validators = new Map<string, ValidateFunction>();
  private templates: { template: string; pattern: RegExp }[];
  /** `METHOD template` of every operation a response was checked for */
  readonly exercised = new Set<string>();

  constructor(readonly doc: OpenApiDoc, readonly base = '/api/v1') {
    addFormats(this.ajv);
    this.ajv.addSchema(doc as object, 'openapi.json');
    // Literal segments before parameters: /lists/{list}/held/{id} must not take /lists/x/held/1/approve.
    this.templates = Object.keys(doc.paths).map((template) => ({
      template,
      pattern: new RegExp(`^${template.replace(/[.*+?^$()|[\]\\]/g, '\\$&').replace(/\{[^}]+\}/g, '[^/]+')}$`),
    }));
  }

  /** Every component schema compiles (the document is valid JSON Schema 2020-12 where it has schemas). */
  compileAll(): string[] {
    const names = Object.keys((this.doc as unknown as { components: { schemas: Record<string, unknown> } }).components.schemas);
    for (const name of names) this.ajv.compile({ $ref: `openapi.json#/components/schemas/${name}` });
    return names;
  }

  /** The operation a request is for, as `METHOD template`; throws when the document has none. */
  operation(method: string, url: string): { template: string; method: string } {
    const path = new URL(url, 'http://x').pathname;
    if (!path.startsWith(this.base)) throw new Error(`${path} is not under ${this.base}`);
    const rest = path.slice(this.base.length);
    const m = method.toLowerCase();
    const found = this.templates.find((t) => t.pattern.test(rest) && this.doc.paths[t.template][m]);
    if (!found) throw new Error(`the OpenAPI document has no operation for ${method} ${rest}`);
    return { template: found.template, method: m };
  }

  /** Validates one response; returns the problems (empty when it conforms). */
  check(method: string, url: string, status: number, body: unknown): string[] {
    const op = this.operation(method, url);
    this.exercised.add(`${op.method.toUpperCase()} ${op.template}`);
    const response = this.doc.paths[op.template][op.method].responses[String(status)];
    if (!response) return [`status ${status} is not documented for ${method} ${op.template}`];
    if (!response.content?.['application/json']) return [];
    const key = `${op.template} ${op.method} ${status}`;
    let validate = this.validators.get(key);
    if (!validate) {
      validate = this.ajv.compile({ $ref: `openapi.json#/${pointer('paths', op.template, op.method, 'responses', String(status), 'content', 'application/json', 'schema')}` });
      this.validators.set(key, validate);
    }
    if (validate(body)) return [];
    return (validate.errors ?? []).map((e) => `${method} ${op.template} ${status}: ${e.instancePath || '/'} ${e.message} ${JSON.stringify(e.params)}`);
  }
}
