/** The extension's icons (they take the theme's colours through jp-icon3). */
import { LabIcon } from '@jupyterlab/ui-components';

const JOBS_SVG = `<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">
  <g class="jp-icon3" fill="#616161">
    <path d="M4 4h16v3H4zm0 6.5h10v3H4zM4 17h16v3H4z"/>
    <path d="M16.5 9.5l4.5 2.5-4.5 2.5z"/>
  </g>
</svg>`;

const RUN_AS_JOB_SVG = `<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">
  <g class="jp-icon3" fill="#616161">
    <path d="M3 5a2 2 0 0 1 2-2h9v2H5v14h14v-9h2v9a2 2 0 0 1-2 2H5a2 2 0 0 1-2-2z"/>
    <path d="M9 8.5v7l6-3.5z"/>
    <path d="M16 3h5v5h-2V6.4l-3.3 3.3-1.4-1.4L17.6 5H16z"/>
  </g>
</svg>`;

export const jobsIcon = new LabIcon({
  name: 'ai-console:jobs',
  svgstr: JOBS_SVG
});

export const runAsJobIcon = new LabIcon({
  name: 'ai-console:run-as-job',
  svgstr: RUN_AS_JOB_SVG
});
