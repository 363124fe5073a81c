export * from './network.js';
export * from './spec.js';
export * from './zoo.js';
export { loadEngine } from './native.js';
