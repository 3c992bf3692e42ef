// The /docs page: Swagger UI over this service's own openapi.yaml. "Try it out" sends
// requests to this same origin (the spec's server is "/"). validatorUrl null: otherwise
// Swagger UI asks validator.swagger.io for a badge, and this page fetches nothing outside.
window.ui = SwaggerUIBundle({
  url: "openapi.yaml",
  dom_id: "#swagger-ui",
  deepLinking: true,
  validatorUrl: null,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
});
