// Building the page: elements from data, and the few shapes every view uses.

const SVG_NS = 'http://www.w3.org/2000/svg';

export const mainEl = document.getElementById('main');
export const crumbsEl = document.getElementById('crumbs');
export const sessionEl = document.getElementById('session');

/** Builds an element; strings become text nodes, `on*` attributes listeners. */
export function h(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

/** Builds an SVG element. */
export function svg(tag, attrs, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

function build(el, attrs, children) {
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith('on')) el.addEventListener(name.slice(2), value);
    else if (name === 'dataset') Object.assign(el.dataset, value);
    else el.setAttribute(name, value === true ? '' : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

export function loading(text) {
  return h('p', { class: 'status', role: 'status' }, text);
}

export function emptyState(text) {
  return h('p', { class: 'empty' }, text);
}

export function notice(text) {
  return h('p', { class: 'notice', role: 'status', tabindex: -1 }, text);
}

/** Shows what just happened in `where` and moves focus there, as the button that did it may be gone. */
export function announce(where, text) {
  const note = notice(text);
  where.replaceChildren(note);
  note.focus();
}
