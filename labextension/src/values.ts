/**
 * Sweep values as the user types them: Python literals separated by commas, the
 * syntax of `nbprod run -p NAME=V1,V2` (a bare word is a string, `[1, 2]` one list
 * value). Each becomes the JSON text the server receives, written as typed so that
 * `1.0` stays a float.
 */

/** Split at the commas that are outside brackets and quotes. */
export function splitValues(text: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let quote: string | null = null;
  let current = '';
  for (let i = 0; i < text.length; i++) {
    const char = text[i];
    if (quote) {
      if (char === '\\') {
        current += char + (text[i + 1] ?? '');
        i++;
        continue;
      }
      if (char === quote) {
        quote = null;
      }
    } else if (char === '"' || char === "'") {
      quote = char;
    } else if ('[({'.includes(char)) {
      depth++;
    } else if ('])}'.includes(char)) {
      depth--;
    } else if (char === ',' && depth === 0) {
      parts.push(current.trim());
      current = '';
      continue;
    }
    current += char;
  }
  parts.push(current.trim());
  return parts.filter(part => part !== '');
}

const PYTHON_CONSTANTS = new Map([
  ['True', 'true'],
  ['False', 'false'],
  ['None', 'null']
]);

/** One typed value as JSON text. */
export function jsonText(token: string): string {
  const constant = PYTHON_CONSTANTS.get(token);
  if (constant !== undefined) {
    return constant;
  }
  // Python accepts +1 and .5; JSON wants 1 and 0.5.
  const number = token.replace(/^\+(?=[\d.])/, '').replace(/^(-?)\./, (_, sign) => `${sign}0.`);
  try {
    JSON.parse(number);
    return number;
  } catch {
    // not JSON: a Python string literal or a bare word, both strings
  }
  const quoted = /^'(.*)'$/s.exec(token);
  return JSON.stringify(quoted ? quoted[1] : token);
}

/** The values typed in one field, as JSON texts. */
export function parseValues(text: string): string[] {
  return splitValues(text).map(jsonText);
}

/** A parameter's default shown as the Python literal the notebook has. */
export function pythonLiteral(value: unknown, type: string): string {
  if (value === null) {
    return 'None';
  }
  if (typeof value === 'boolean') {
    return value ? 'True' : 'False';
  }
  if (typeof value === 'number' && type === 'float' && Number.isInteger(value)) {
    return value.toFixed(1);
  }
  return JSON.stringify(value);
}
