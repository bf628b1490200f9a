// The API docs page: Swagger UI over this server's OpenAPI document. A
// token entered under "Authorize" stays in this page's memory only.
/* global SwaggerUIBundle */
window.ui = SwaggerUIBundle({
  url: '/api/openapi.json',
  dom_id: '#swagger-ui',
  deepLinking: false,
  persistAuthorization: false,
  tryItOutEnabled: false,
});
