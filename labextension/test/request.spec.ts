import { describe, expect, it } from 'vitest';

import { ApiError } from '../src/request';

function response(status: number, statusText: string, body: string): Response {
  return new Response(body, {
    status,
    statusText,
    headers: { 'Content-Type': 'application/json' }
  });
}

describe('ApiError.fromResponse', () => {
  it('reads the message and the field of an Error body', async () => {
    const error = await ApiError.fromResponse(
      response(
        400,
        'Bad Request',
        JSON.stringify({
          message: 'parameter "lr": expected float, got str',
          field: 'parameters.lr'
        })
      )
    );
    expect(error).toBeInstanceOf(ApiError);
    expect(error.status).toBe(400);
    expect(error.message).toBe('parameter "lr": expected float, got str');
    expect(error.field).toBe('parameters.lr');
    expect(error.isClientError).toBe(true);
  });

  it('has no field when the body names none', async () => {
    const error = await ApiError.fromResponse(
      response(
        409,
        'Conflict',
        JSON.stringify({ message: 'no slice is free', field: null })
      )
    );
    expect(error.message).toBe('no slice is free');
    expect(error.field).toBeNull();
  });

  it("keeps the status text when the body is not JSON (a proxy's page)", async () => {
    const error = await ApiError.fromResponse(
      response(502, 'Bad Gateway', '<html>502</html>')
    );
    expect(error.message).toBe('Bad Gateway');
    expect(error.field).toBeNull();
    expect(error.isClientError).toBe(false);
  });

  it('falls back to the HTTP status without a status text or message', async () => {
    const error = await ApiError.fromResponse(
      response(503, '', JSON.stringify({ message: '' }))
    );
    expect(error.message).toBe('HTTP 503');
  });

  it("counts only 4xx as the user's to correct", () => {
    expect(new ApiError(400, 'x').isClientError).toBe(true);
    expect(new ApiError(499, 'x').isClientError).toBe(true);
    expect(new ApiError(399, 'x').isClientError).toBe(false);
    expect(new ApiError(500, 'x').isClientError).toBe(false);
  });
});
