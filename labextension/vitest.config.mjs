// Unit tests of the extension's pure modules (test/*.spec.ts), run in Node.
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.spec.ts'],
    environment: 'node'
  }
});
